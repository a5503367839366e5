package traffic

import (
	"strconv"
	"time"
)

// Benign audit activity that is not a side effect of a request: members
// logging in and working in the web console, admins managing keys and
// roles, and the platform's own jobs. It is planned for the whole span
// before generation starts, so that attacks can be placed where they do
// not collide with it.

const day = int64(24 * time.Hour)

func (g *gen) schedule() {
	g.sessions()
	g.lifecycle()
}

// adminEvent notes a benign key creation or role change in an org, which
// attacks keep away from (sequence rules pair such events by org).
func (g *gen) adminEvent(o *org, t int64) {
	if g.orgEvents == nil {
		g.orgEvents = map[*org][]int64{}
	}
	g.orgEvents[o] = append(g.orgEvents[o], t)
}

// quiet reports whether an org has no benign key creation or role change
// within margin of [from, to].
func (g *gen) quiet(o *org, from, to, margin int64) bool {
	if _, ok := g.promoted[o]; ok {
		return false
	}
	for _, t := range g.orgEvents[o] {
		if t >= from-margin && t <= to+margin {
			return false
		}
	}
	return true
}

func (g *gen) sessions() {
	r := g.sr
	first := floorDiv(g.start, day) - 1
	for d := first; d*day < g.end; d++ {
		for _, u := range g.w.users {
			o := u.org
			// Local midnight of day d in UTC.
			midnight := d*day - int64(o.tz*float64(time.Hour))
			weekday := (d + 4) % 7
			mean := 1.1
			if weekday == 0 || weekday == 6 {
				mean = 0.12
			}
			for n := r.poisson(mean); n > 0; n-- {
				t := midnight + int64((7.5+11*r.float())*float64(time.Hour))
				g.session(u, t)
			}
		}
	}
}

func (g *gen) session(u *user, t int64) {
	r := g.sr
	o := u.org
	g.sessionN++
	sess := g.sessionN
	ip := u.ips[0]
	if len(u.ips) > 1 && r.chance(0.3) {
		ip = u.ips[1]
	}
	ev := func(at int64, action, resType string) *rec {
		g.scheduled = append(g.scheduled, rec{audit: true, ts: at, org: o.id, actor: u.id, actorType: "user", ip: ip,
			action: action, resType: resType, outcome: "success", session: sess, extra: extraSess})
		return &g.scheduled[len(g.scheduled)-1]
	}
	if r.chance(0.05) {
		for n := r.between(1, 2); n > 0; n-- {
			ev(t-int64(r.between(15, 90))*1e9, "auth.login", "session").outcome = "failure"
		}
	}
	ev(t, "auth.login", "session")
	level := permLevel(u.role)
	for n := r.poisson(2 + 2*float64(min(level, 2)-1)); n > 0; n-- {
		at := t + int64(r.between(60, 90*60))*1e9
		ns := pick(r, o.namespaces)
		switch x := r.float(); {
		case x < 0.5:
			if ns.class == classConfidential || ns.class == classPHI {
				e := ev(at, "document.read", "document")
				e.ns, e.doc = ns, uint32(1+r.intn(ns.docs))
			}
		case x < 0.8:
			e := ev(at, "document.update", "document")
			e.ns, e.doc = ns, uint32(1+r.intn(ns.docs))
			if level < 2 {
				if !r.chance(0.05) {
					e.action, e.resType, e.ns, e.doc = "auth.refresh", "session", nil, 0
				} else {
					e.outcome = "denied"
				}
			}
		case x < 0.95:
			if level >= 2 {
				e := ev(at, "document.create", "document")
				e.ns, e.doc = ns, uint32(ns.docs+1+r.intn(1000))
			}
		default:
			switch {
			case level >= 3 && r.chance(0.5):
				e := ev(at, "document.delete", "document")
				e.ns, e.doc = ns, uint32(1+r.intn(ns.docs))
			case level == 4:
				e := ev(at, "namespace.update", "namespace")
				e.ns, e.resID = ns, ns.id
				e.changes = `{"description":["","` + "updated by console" + `"]}`
			}
		}
	}
	if level == 4 && r.chance(0.04) {
		e := ev(t+int64(r.between(60, 3600))*1e9, "member.invite", "member")
		e.resID = "inv_" + strconv.FormatUint(r.u64()>>40, 36)
		e.changes = `{"role":[null,"READ"]}`
	}
	if r.chance(0.4) {
		ev(t+int64(r.between(95*60, 4*3600))*1e9, "auth.logout", "session")
	}
}

// lifecycle plans key creations, revocations and rotations, role changes,
// temporary namespaces and the nightly inactive-key review.
func (g *gen) lifecycle() {
	r := g.sr
	span := g.end - g.start
	f := float64(span) / float64(day)
	if f > 1 {
		f = 1
	}
	at := func(lo, hi float64) int64 { return g.start + int64((lo+(hi-lo)*r.float())*float64(span)) }
	admin := func(o *org) *user { return pick(r, o.admins) }
	audit := func(t int64, o *org, u *user, action, resType, resID, changes string) {
		g.scheduled = append(g.scheduled, rec{audit: true, ts: t, org: o.id, actor: u.id, actorType: "user", ip: u.ips[0],
			action: action, resType: resType, resID: resID, changes: changes, outcome: "success"})
	}
	for _, k := range g.w.keys {
		if k.perm == permAdmin || k.reserved {
			continue
		}
		o := k.org
		switch x := r.float(); {
		case x < 0.04*f:
			// A key created during the span; its traffic starts a few
			// minutes after creation.
			k.from = at(0.05, 0.9)
			t := k.from - int64(r.between(60, 600))*1e9
			audit(t, o, admin(o), "api_key.create", "api_key", k.id,
				`{"permission":[null,"`+k.perm+`"],"namespaces":[null,["`+k.ns[0].id+`"]]}`)
			g.adminEvent(o, t)
		case x < 0.06*f:
			k.until = at(0.1, 0.95)
			audit(k.until+int64(r.between(0, 120))*1e9, o, admin(o), "api_key.revoke", "api_key", k.id,
				`{"status":["active","revoked"]}`)
			if r.chance(0.5) {
				// A client that was not told keeps calling with it.
				every := int64(r.between(120, 400)) * 1e9
				g.stale = append(g.stale, staleClient{k: k, next: k.until + int64(r.between(60, 600))*1e9,
					stop: g.end, every: every})
			}
		case x < 0.09*f:
			audit(at(0, 1), o, admin(o), "api_key.rotate", "api_key", k.id, `{"version":[1,2]}`)
		}
	}
	for i, o := range g.w.orgs {
		size := 1 - float64(i)/float64(len(g.w.orgs))
		if r.chance(0.2 * f * size) {
			var cand []*user
			for _, u := range o.users {
				if u.role != permAdmin {
					cand = append(cand, u)
				}
			}
			if len(cand) > 0 {
				u := pick(r, cand)
				to := map[string]string{permRead: permWrite, permWrite: permDelete, permDelete: permWrite}[u.role]
				t := at(0.05, 0.95)
				audit(t, o, admin(o), "member.role_change", "member", u.id, `{"role":["`+u.role+`","`+to+`"]}`)
				g.adminEvent(o, t)
			}
		}
		if r.chance(0.08 * f) {
			// A scratch namespace, created and deleted again.
			id := "ns_" + strconv.FormatUint(r.u64()>>40|1<<23, 16)
			t := at(0.05, 0.6)
			u := admin(o)
			audit(t, o, u, "namespace.create", "namespace", id, `{"data_classification":[null,"INTERNAL"]}`)
			audit(t+int64(r.between(600, 7200))*1e9, o, u, "namespace.delete", "namespace", id, "")
		}
	}
	// One member promoted to ADMIN in a span of a few hours or more, in an
	// org that creates no key around that time: the legitimate half of the
	// privilege-escalation pattern.
	if span >= int64(2*time.Hour) {
		for tries := 0; tries < 20; tries++ {
			o := pick(r, g.w.orgs)
			t := at(0.2, 0.8)
			if !g.quiet(o, t, t, int64(time.Hour)) {
				continue
			}
			var cand []*user
			for _, u := range o.users {
				if u.role == permWrite {
					cand = append(cand, u)
				}
			}
			if len(cand) == 0 {
				continue
			}
			u := pick(r, cand)
			audit(t, o, admin(o), "member.role_change", "member", u.id, `{"role":["WRITE","ADMIN"]}`)
			g.promoted[o] = t
			break
		}
	}
	// The nightly review flags keys unused for 90 days (policy 4.4).
	for d := floorDiv(g.start, day); d*day < g.end; d++ {
		t := d*day + int64(3*time.Hour) + int64(r.intn(600))*1e9
		if t < g.start || t >= g.end {
			continue
		}
		for n := r.between(1, 3); n > 0; n-- {
			o := pick(r, g.w.orgs)
			g.scheduled = append(g.scheduled, rec{audit: true, ts: t + int64(n)*1e9, org: o.id, actor: "system",
				actorType: "system", action: "api_key.flag_inactive", resType: "api_key",
				resID: "key_" + strconv.FormatUint(r.u64()>>40|1<<23, 16), changes: `{"flagged_inactive":[false,true]}`,
				outcome: "success"})
		}
	}
	// Short bursts of server errors on one operation: a pod restarting, a
	// slow dependency. Benign, and well below an outage.
	for h := int64(0); h*int64(time.Hour) < span; h++ {
		if r.chance(0.12) {
			from := g.start + h*int64(time.Hour) + int64(r.intn(3000))*1e9
			g.errorMods = append(g.errorMods, errorMod{op: pick(r, []string{"compute", "upload", "search", "data"}),
				from: from, to: from + int64(r.between(10, 30))*1e9, p: 0.1 + 0.15*r.float(), attack: -1})
		}
	}
}
