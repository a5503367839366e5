package traffic

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// Rule ids of configs/rules that attacks are expected to trigger. The pack
// test (pack_test.go) replays generated traffic through the pack and holds
// each attack to its list.
const (
	ruleKeyGuessing      = "auth-key-guessing"
	ruleManyKeys         = "auth-many-keys-from-address"
	ruleLoginStuffing    = "auth-login-stuffing"
	ruleLoginFailures    = "auth-login-failures-per-account"
	ruleDormant          = "key-dormant-reactivated"
	ruleAdminNewAddr     = "key-admin-new-address"
	ruleKeyCreationBurst = "key-creation-burst"
	ruleBulkDownload     = "data-bulk-download"
	ruleMassReads        = "data-mass-document-reads"
	ruleNSEnum           = "data-namespace-enumeration"
	ruleDeniedRatio      = "data-denied-ratio"
	ruleKeyVolume        = "edge-key-volume-anomaly"
	ruleOrgVolume        = "edge-org-volume-anomaly"
	ruleRateLimit        = "edge-rate-limit-sustained"
	ruleMetricsProbe     = "edge-metrics-probe-external"
	ruleMetricsServed    = "edge-metrics-served-external"
	ruleMetadata         = "edge-metadata-address"
	ruleMassDelete       = "destructive-mass-delete"
	ruleNSDeletes        = "destructive-namespace-deletes"
	ruleNewKeyDelete     = "destructive-new-key-mass-delete"
	rulePrivThenKey      = "priv-admin-grant-then-key"
	ruleDenied           = "priv-denied-repeated"
	ruleOutage           = "health-server-error-burst"
	ruleErrorRate        = "health-error-rate-elevated"
)

// warmup is how long after the start of the span an attack that needs
// history may begin: the pack's anomaly baselines (15m plus a 1m window)
// and its new-address learning period (15m) must have filled.
const warmup = 17 * time.Minute

type attackSpec struct {
	name   string
	desc   string
	length time.Duration
	warm   bool // needs warmup
	busy   bool // wants high platform traffic (the outage)
	rules  []string
	build  func(a *attackRun) bool
}

var attackSpecs = []*attackSpec{
	{name: "key-guessing", length: 15 * time.Minute, rules: []string{ruleKeyGuessing},
		desc: "one address tries invented API keys, about 43 a minute for 15 minutes (kept under per-minute limits)", build: buildKeyGuessing},
	{name: "stolen-key-list", length: 8 * time.Minute, rules: []string{ruleManyKeys},
		desc: "one address tries 25 valid keys of several orgs, as with a leaked configuration file", build: buildStolenKeys},
	{name: "login-stuffing", length: 8 * time.Minute, rules: []string{ruleLoginStuffing},
		desc: "one address tries one password each for 30 members of several orgs", build: buildLoginStuffing},
	{name: "password-guessing", length: 12 * time.Minute, rules: []string{ruleLoginFailures},
		desc: "one address tries 18 passwords for one admin account", build: buildPasswordGuessing},
	{name: "dormant-key", length: 4 * time.Minute, rules: []string{ruleDormant},
		desc: "a key last used 95 days ago reads documents again from a new address", build: buildDormant},
	{name: "admin-key-new-address", length: 3 * time.Minute, warm: true, rules: []string{ruleAdminNewAddr},
		desc: "an org's ADMIN automation key is used from an address the org never used for ADMIN access", build: buildAdminNewAddress},
	{name: "key-minting", length: 20 * time.Minute, rules: []string{ruleKeyCreationBurst},
		desc: "one admin account creates 8 API keys in 20 minutes", build: buildKeyMinting},
	{name: "bulk-download", length: 8 * time.Minute, rules: []string{ruleBulkDownload},
		desc: "a key downloads about 3 GB from a CONFIDENTIAL namespace in 8 minutes", build: buildBulkDownload},
	{name: "phi-scrape", length: 10 * time.Minute, rules: []string{ruleMassReads},
		desc: "a key reads 4,500 documents of a PHI namespace one by one from a new address", build: buildPHIScrape},
	{name: "namespace-enumeration", length: 5 * time.Minute, rules: []string{ruleNSEnum, ruleDeniedRatio},
		desc: "a key walks 45 namespace ids of other orgs and invented ones, getting 403 and 404", build: buildEnumeration},
	{name: "permission-probing", length: 8 * time.Minute, rules: []string{ruleDeniedRatio, ruleDenied},
		desc: "a READ key tries 60 updates and deletes it is not allowed to make", build: buildProbing},
	{name: "key-volume-spike", length: 4 * time.Minute, warm: true, rules: []string{ruleKeyVolume},
		desc: "one key of a small org sends 1,500 searches a minute for 4 minutes", build: buildKeySpike},
	{name: "distributed-flood", length: 4 * time.Minute, warm: true, rules: []string{ruleOrgVolume},
		desc: "600 addresses send an org 4,000 unauthenticated token requests a minute, each address under every per-address limit", build: buildFlood},
	{name: "mass-delete", length: 6 * time.Minute, rules: []string{ruleMassDelete},
		desc: "a member deletes 40 documents of a PHI namespace in 6 minutes", build: buildMassDelete},
	{name: "namespace-wipe", length: 15 * time.Minute, rules: []string{ruleNSDeletes},
		desc: "an admin account deletes 4 namespaces of its org in 15 minutes from a new address", build: buildNamespaceWipe},
	{name: "new-key-mass-delete", length: 7 * time.Minute, rules: []string{ruleNewKeyDelete},
		desc: "an admin account creates a DELETE key, which deletes 15 documents within minutes", build: buildNewKeyDelete},
	{name: "privilege-escalation", length: 6 * time.Minute, rules: []string{rulePrivThenKey},
		desc: "an admin account promotes a READ member to ADMIN, who creates an ADMIN key 4 minutes later", build: buildPrivEscalation},
	{name: "metrics-exposure", length: 3 * time.Minute, rules: []string{ruleMetricsProbe, ruleMetricsServed},
		desc: "an outside address requests /metrics, /internal/metrics and /debug/pprof; the internal metrics route answers", build: buildMetrics},
	{name: "metadata-ssrf", length: 2 * time.Minute, rules: []string{ruleMetadata},
		desc: "a key asks the upload-from-URL endpoint to fetch the cloud metadata address in several spellings", build: buildMetadata},
	{name: "rate-limit-abuse", length: 12 * time.Minute, rules: []string{ruleRateLimit},
		desc: "a key keeps searching at 100 a minute although 40 a minute are rejected with 429", build: buildRateLimit},
	{name: "outage", length: 4 * time.Minute, busy: true, rules: []string{ruleOutage, ruleErrorRate},
		desc: "search answers 503/504 for 60% of requests on the whole platform for 4 minutes", build: buildOutage},
}

// AttackNames lists the attacks the generator can inject, in the order
// they are placed in the span.
func AttackNames() []string {
	out := make([]string, len(attackSpecs))
	for i, s := range attackSpecs {
		out[i] = s.name
	}
	return out
}

func findAttack(name string) *attackSpec {
	for _, s := range attackSpecs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// attackRun collects one attack's events.
type attackRun struct {
	g     *gen
	spec  *attackSpec
	t     int64 // planned start
	a     Attack
	first int64
	last  int64
	n     int
}

// injectAttacks places the selected attacks over the span and builds their
// events. Slots are spread evenly (attacks that need history after the
// warm-up); the outage takes the slot with the most traffic.
func (g *gen) injectAttacks() {
	want := map[string]bool{}
	for _, n := range g.cfg.Attacks {
		want[n] = true
	}
	var specs []*attackSpec
	for _, s := range attackSpecs {
		if want[s.name] {
			specs = append(specs, s)
		}
	}
	if len(specs) == 0 {
		return
	}
	span := g.end - g.start
	// Slot i of n starts at lo + (i + jitter) * (hi - lo) / n.
	n := len(specs)
	slots := make([]int64, n)
	lo, hi := int64(time.Minute), span-int64(time.Minute)
	if span >= int64(6*time.Hour) {
		lo, hi = int64(30*time.Minute), span-int64(30*time.Minute)
	}
	for i := range slots {
		slots[i] = g.start + lo + int64((float64(i)+0.1+0.3*g.ar.float())*float64(hi-lo)/float64(n))
	}
	// The busiest slot goes to the outage (the rate of errors needs
	// traffic to be judged); the others keep their order.
	order := make([]*attackSpec, 0, n)
	busiest, best := -1, -1.0
	for i, t := range slots {
		var act float64
		for _, o := range g.w.orgs {
			act += o.weight * o.activity(t)
		}
		if act > best && t-g.start >= int64(time.Minute) {
			busiest, best = i, act
		}
	}
	var busy *attackSpec
	for _, s := range specs {
		if s.busy {
			busy = s
		} else {
			order = append(order, s)
		}
	}
	plan := make([]*attackSpec, n)
	j := 0
	for i := range plan {
		if busy != nil && i == busiest {
			plan[i] = busy
			continue
		}
		if j < len(order) {
			plan[i] = order[j]
			j++
		}
	}
	if busy != nil && busiest < 0 {
		plan[n-1] = busy
	}
	for i, s := range plan {
		// Inside the span, after the warm-up for attacks that need history.
		earliest, latest := g.start+int64(time.Minute), g.end-int64(s.length)-int64(30*time.Second)
		if s.warm {
			earliest = g.start + int64(warmup)
		}
		if latest < earliest {
			need := time.Minute + s.length + 30*time.Second
			if s.warm {
				need = warmup + s.length + 30*time.Second
			}
			g.skipped = append(g.skipped, SkippedAttack{Name: s.name,
				Reason: fmt.Sprintf("needs a span of at least %s", need.Round(time.Minute))})
			continue
		}
		t := max(earliest, min(slots[i], latest))
		run := &attackRun{g: g, spec: s, t: t, first: math.MaxInt64, last: math.MinInt64}
		run.a = Attack{Name: s.name, Description: s.desc, Group: map[string]string{}, Rules: s.rules}
		if !s.build(run) {
			g.skipped = append(g.skipped, SkippedAttack{Name: s.name, Reason: "no suitable org, key or member on this platform"})
			continue
		}
		if run.first <= run.last {
			run.a.Start = time.Unix(0, run.first).UTC()
			run.a.End = time.Unix(0, run.last).UTC()
			run.a.Events = run.n
		}
		g.attacks = append(g.attacks, run.a)
	}
	sort.SliceStable(g.attacks, func(i, k int) bool { return g.attacks[i].Start.Before(g.attacks[k].Start) })
	g.outageIdx = g.outageIdx[:0]
	for i := range g.attacks {
		if g.attacks[i].Name == "outage" {
			for k := range g.errorMods {
				if m := &g.errorMods[k]; m.attack >= 0 {
					g.outageIdx = append(g.outageIdx, i)
					m.attack = len(g.outageIdx) - 1
				}
			}
		}
	}
	g.outageCount = make([]int, len(g.outageIdx))
}

// Helpers for building attacks.

func (a *attackRun) span(ts int64) {
	a.n++
	if ts < a.first {
		a.first = ts
	}
	if ts > a.last {
		a.last = ts
	}
}

func (a *attackRun) form(ts *int64) uint8 {
	*ts -= *ts % 1e6
	if a.g.ar.intn(100) < 15 {
		return tsUnixMs
	}
	return tsMillis
}

// req adds an attack request.
func (a *attackRun) req(rc rec) {
	g := a.g
	rc.protect, rc.ready = true, true
	rc.num = 1<<40 + g.attackReq
	g.attackReq++
	rc.tsForm = a.form(&rc.ts)
	if rc.latency == 0 {
		rc.latency = int32(20 + g.ar.intn(400))
	}
	rc.logAt = rc.ts + int64(rc.latency)*1e5
	if rc.ts >= g.start {
		a.span(rc.ts)
		g.scheduled = append(g.scheduled, rc)
	} else {
		g.early = append(g.early, rc)
	}
}

// audit adds an attack audit event.
func (a *attackRun) audit(ev rec) {
	g := a.g
	ev.audit, ev.protect, ev.ready = true, true, true
	ev.num = 1<<40 + g.attackEvt
	g.attackEvt++
	ev.tsForm = a.form(&ev.ts)
	ev.logAt = ev.ts + int64(100+g.ar.intn(500))*1e6
	a.span(ev.ts)
	g.scheduled = append(g.scheduled, ev)
}

func (a *attackRun) at(d time.Duration) int64 { return a.t + int64(d) }

func (a *attackRun) ip() string { return a.g.w.publicIPFrom(a.g.ar, false) }

var attackerCountries = []string{"RU", "CN", "BR", "VN", "NL", "RO", "NG", "KP", "UA", "US"}

func (a *attackRun) country() string { return pick(a.g.ar, attackerCountries) }

func (g *gen) taken(x any) bool {
	if g.used == nil {
		g.used = map[any]bool{}
	}
	return g.used[x]
}

func (g *gen) take(x any) { g.taken(x); g.used[x] = true }

// activeKey reports whether a benign key exists and is used over the
// whole attack, with margins.
func (a *attackRun) activeKey(k *apiKey) bool {
	from, to := a.t-int64(20*time.Minute), a.t+int64(a.spec.length)+int64(20*time.Minute)
	return k.perm != permAdmin && !k.reserved && k.from <= from && (k.until == 0 || k.until > to) && !a.g.taken(k)
}

// findKey returns the first suitable key in an order drawn from the
// attack's random stream, and marks it taken.
func (a *attackRun) findKey(ok func(*apiKey) bool) *apiKey {
	keys := a.g.w.keys
	off := a.g.ar.intn(len(keys))
	for i := range keys {
		k := keys[(off+i)%len(keys)]
		if a.activeKey(k) && ok(k) {
			a.g.take(k)
			return k
		}
	}
	return nil
}

// findOrg returns a suitable org that no other attack uses and that has no
// benign key creation or role change within an hour of the attack.
func (a *attackRun) findOrg(ok func(*org) bool) *org {
	orgs := a.g.w.orgs
	off := a.g.ar.intn(len(orgs))
	for i := range orgs {
		o := orgs[(off+i)%len(orgs)]
		if !a.g.taken(o) && ok(o) && a.g.quiet(o, a.t, a.t+int64(a.spec.length), int64(time.Hour)) {
			a.g.take(o)
			return o
		}
	}
	return nil
}

func (a *attackRun) orgRank(o *org) int {
	for i, x := range a.g.w.orgs {
		if x == o {
			return i
		}
	}
	return -1
}

func nsOf(k *apiKey, class ...string) *namespace {
	for _, ns := range k.ns {
		for _, c := range class {
			if ns.class == c {
				return ns
			}
		}
	}
	return nil
}

func (a *attackRun) keyGroup(k *apiKey) {
	a.a.Group["api_key_id"] = k.id
	a.a.Group["org_id"] = k.org.id
}

// The attacks.

func buildKeyGuessing(a *attackRun) bool {
	o := pick(a.g.ar, a.g.w.orgs)
	ip, c := a.ip(), a.country()
	a.a.Group["ip"] = ip
	a.a.Group["org_id"] = o.id
	for i := 0; i < 643; i++ {
		a.req(rec{ts: a.t + int64(i)*1400e6, org: o.id, ip: ip, country: c, rt: pick(a.g.ar, []*route{rListNS, rKeys}),
			status: 401, bytesOut: 64, latency: 9, ua: "python-requests/2.31.0"})
	}
	return true
}

func buildStolenKeys(a *attackRun) bool {
	ip, c := a.ip(), a.country()
	a.a.Group["ip"] = ip
	orgs := map[*org]int{}
	var keys []*apiKey
	for len(keys) < 25 {
		k := a.findKey(func(k *apiKey) bool { return orgs[k.org] < 6 })
		if k == nil {
			return false
		}
		orgs[k.org]++
		keys = append(keys, k)
	}
	for i, k := range keys {
		t := a.at(time.Duration(i) * 19 * time.Second)
		for j := a.g.ar.between(1, 3); j > 0; j-- {
			rc := rec{ts: t, org: k.org.id, key: k.id, perm: k.perm, ip: ip, country: c, rt: rListNS, status: 200,
				bytesOut: int64(1500 + a.g.ar.intn(3000)), latency: 8, ua: "python-requests/2.31.0"}
			a.req(rc)
			t += int64(a.g.ar.between(2, 6)) * 1e9
		}
	}
	return true
}

func buildLoginStuffing(a *attackRun) bool {
	ip := a.ip()
	a.a.Group["ip"] = ip
	users := a.g.w.users
	off := a.g.ar.intn(len(users))
	for i := 0; i < 30; i++ {
		u := users[(off+i*7)%len(users)]
		a.audit(rec{ts: a.at(time.Duration(i) * 16 * time.Second), org: u.org.id, actor: u.id, actorType: "user", ip: ip,
			action: "auth.login", resType: "session", outcome: "failure"})
	}
	return true
}

func buildPasswordGuessing(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool { return true })
	if o == nil {
		return false
	}
	u := o.admins[0]
	ip := a.ip()
	a.a.Group["actor_id"] = u.id
	a.a.Group["ip"] = ip
	a.a.Group["org_id"] = o.id
	for i := 0; i < 18; i++ {
		a.audit(rec{ts: a.at(time.Duration(i) * 40 * time.Second), org: o.id, actor: u.id, actorType: "user", ip: ip,
			action: "auth.login", resType: "session", outcome: "failure"})
	}
	return true
}

func buildDormant(a *attackRun) bool {
	k := a.g.w.dormant
	a.keyGroup(k)
	ns := k.ns[0]
	// Its last use, 95 days earlier, from its usual address.
	a.req(rec{ts: a.g.start - int64(95*24*time.Hour) + int64(a.g.ar.intn(86400))*1e9, org: k.org.id, key: k.id,
		perm: k.perm, ip: k.ips[0], country: k.country, rt: rDocGet, ns: ns, doc: 17, status: 200, bytesOut: 14211,
		ua: k.ua})
	ip, c := a.ip(), a.country()
	a.a.Group["ip"] = ip
	a.a.Note = "the key's previous use, 95 days before the span, is a late line near the start of the request log"
	for i := 0; i < 8; i++ {
		a.req(rec{ts: a.at(time.Duration(i) * 30 * time.Second), org: k.org.id, key: k.id, perm: k.perm, ip: ip,
			country: c, rt: pick(a.g.ar, []*route{rDocGet, rDocList}), ns: ns, doc: uint32(1 + a.g.ar.intn(ns.docs)),
			status: 200, bytesOut: int64(2000 + a.g.ar.intn(30000)), ua: "python-requests/2.31.0"})
	}
	return true
}

func buildAdminNewAddress(a *attackRun) bool {
	var k *apiKey
	off := a.g.ar.intn(len(a.g.w.adminKeys))
	for i := range a.g.w.adminKeys {
		c := a.g.w.adminKeys[(off+i)%len(a.g.w.adminKeys)]
		if !a.g.taken(c.org) {
			k = c
			a.g.take(c.org)
			break
		}
	}
	if k == nil {
		return false
	}
	ip, c := a.ip(), a.country()
	a.keyGroup(k)
	a.a.Group["ip"] = ip
	for i, rt := range []*route{rKeys, rMembers, rListNS, rUsage, rKeys, rListNS} {
		a.req(rec{ts: a.at(time.Duration(i) * 31 * time.Second), org: k.org.id, key: k.id, perm: k.perm, ip: ip,
			country: c, rt: rt, status: 200, bytesOut: int64(1000 + a.g.ar.intn(5000)), ua: "curl/8.5.0"})
	}
	return true
}

func buildKeyMinting(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool { return true })
	if o == nil {
		return false
	}
	u := o.admins[0]
	ip := a.ip()
	a.a.Group["actor_id"] = u.id
	a.a.Group["org_id"] = o.id
	a.a.Group["ip"] = ip
	a.audit(rec{ts: a.at(0), org: o.id, actor: u.id, actorType: "user", ip: ip, action: "auth.login", resType: "session",
		outcome: "success"})
	for i := 0; i < 8; i++ {
		perm := []string{permWrite, permDelete, permAdmin}[i%3]
		a.audit(rec{ts: a.at(time.Minute + time.Duration(i)*150*time.Second), org: o.id, actor: u.id, actorType: "user",
			ip: ip, action: "api_key.create", resType: "api_key", resID: "key_" + strconv.FormatUint(a.g.ar.u64()>>40|1<<23, 16),
			changes: `{"permission":[null,"` + perm + `"],"namespaces":[null,["*"]]}`, outcome: "success"})
	}
	return true
}

func buildBulkDownload(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool {
		return nsOf(k, classConfidential) != nil && k.peakRate < 1 && !a.g.taken(k.org)
	})
	if k == nil {
		return false
	}
	a.g.take(k.org)
	ns := nsOf(k, classConfidential)
	a.keyGroup(k)
	a.a.Group["namespace"] = ns.id
	ip := k.ips[0]
	for i := 0; i < 350; i++ {
		ts := a.at(time.Duration(i) * 1370 * time.Millisecond)
		doc := uint32(1 + a.g.ar.intn(ns.docs))
		size := int64(a.g.ar.lognormal(8e6, 0.4))
		rc := rec{ts: ts, org: k.org.id, key: k.id, perm: k.perm, ip: ip, country: k.country, rt: rDocDownload,
			ns: ns, doc: doc, status: 200, bytesOut: size, latency: int32(10 * (60 + size/50e3)), ua: k.ua}
		a.req(rc)
		a.audit(rec{ts: ts + int64(rc.latency)*1e5, org: k.org.id, actor: k.id, actorType: "api_key", key: k.id,
			perm: k.perm, ip: ip, action: "document.read", resType: "document", ns: ns, doc: doc, outcome: "success"})
	}
	return true
}

func buildPHIScrape(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool {
		return nsOf(k, classPHI) != nil && k.peakRate < 2 && !a.g.taken(k.org)
	})
	if k == nil {
		return false
	}
	a.g.take(k.org)
	ns := nsOf(k, classPHI)
	ip, c := a.ip(), a.country()
	a.keyGroup(k)
	a.a.Group["namespace"] = ns.id
	a.a.Group["ip"] = ip
	for i := 0; i < 4500; i++ {
		ts := a.at(time.Duration(i) * 133 * time.Millisecond)
		doc := uint32(1 + (i*7919)%ns.docs)
		a.req(rec{ts: ts, org: k.org.id, key: k.id, perm: k.perm, ip: ip, country: c, rt: rDocGet, ns: ns, doc: doc,
			status: 200, bytesOut: int64(a.g.ar.lognormal(15e3, 0.5)), latency: 120, ua: "python-requests/2.31.0"})
		a.audit(rec{ts: ts + 12e6, org: k.org.id, actor: k.id, actorType: "api_key", key: k.id, perm: k.perm, ip: ip,
			action: "document.read", resType: "document", ns: ns, doc: doc, outcome: "success"})
	}
	return true
}

func buildEnumeration(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool { return k.peakRate < 0.02 })
	if k == nil {
		return false
	}
	a.keyGroup(k)
	ip := k.ips[0]
	a.a.Group["ip"] = ip
	var targets []*namespace
	for _, o := range a.g.w.orgs {
		if o != k.org {
			targets = append(targets, o.namespaces[0])
		}
	}
	for i := 0; i < 45; i++ {
		rc := rec{ts: a.at(time.Duration(i) * 6500 * time.Millisecond), org: k.org.id, key: k.id, perm: k.perm, ip: ip,
			country: k.country, rt: rGetNS, bytesOut: 110, latency: 30, ua: k.ua}
		if i%9 < 5 && len(targets) > 0 {
			rc.ns = targets[(i*5)%len(targets)]
			rc.status = 403
		} else {
			rc.nsID = "ns_" + strconv.FormatUint(a.g.ar.u64()>>40|1<<23, 16)
			rc.status = 404
		}
		a.req(rc)
	}
	return true
}

func buildProbing(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool { return k.perm == permRead && k.peakRate < 0.05 && !a.g.taken(k.org) })
	if k == nil {
		return false
	}
	a.keyGroup(k)
	a.g.take(k.org)
	if !a.g.quiet(k.org, a.t, a.t+int64(a.spec.length), int64(time.Hour)) {
		return false
	}
	ip := k.ips[0]
	for i := 0; i < 60; i++ {
		ns := k.ns[i%len(k.ns)]
		doc := uint32(1 + a.g.ar.intn(ns.docs))
		rt, action := rDocUpdate, "document.update"
		if i%3 == 0 {
			rt, action = rDocDelete, "document.delete"
		}
		ts := a.at(time.Duration(i) * 8 * time.Second)
		a.req(rec{ts: ts, org: k.org.id, key: k.id, perm: k.perm, ip: ip, country: k.country, rt: rt, ns: ns, doc: doc,
			status: 403, bytesIn: 900, bytesOut: 140, latency: 40, ua: k.ua})
		a.audit(rec{ts: ts + 4e6, org: k.org.id, actor: k.id, actorType: "api_key", key: k.id, perm: k.perm, ip: ip,
			action: action, resType: "document", ns: ns, doc: doc, outcome: "denied"})
	}
	return true
}

func buildKeySpike(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool {
		rank := a.orgRank(k.org)
		return rank >= 12 && k.peakRate > 0.03 && k.ns[0].class != classPHI && !a.g.taken(k.org)
	})
	if k == nil {
		return false
	}
	a.g.take(k.org)
	a.keyGroup(k)
	ns := k.ns[0]
	for i := 0; i < 6000; i++ {
		a.req(rec{ts: a.at(time.Duration(i) * 40 * time.Millisecond), org: k.org.id, key: k.id, perm: k.perm,
			ip: k.ips[i%len(k.ips)], country: k.country, rt: rSearch, ns: ns, status: 200, bytesIn: 512,
			bytesOut: int64(a.g.ar.lognormal(6e3, 0.5)), latency: 400, ua: k.ua})
	}
	return true
}

func buildFlood(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool { r := a.orgRank(o); return r >= 4 && r < 20 })
	if o == nil {
		return false
	}
	a.a.Group["org_id"] = o.id
	ips := make([]string, 600)
	for i := range ips {
		ips[i] = a.g.w.publicIPFrom(a.g.ar, a.g.ar.chance(0.1))
	}
	for i := 0; i < 16000; i++ {
		a.req(rec{ts: a.at(time.Duration(i) * 15 * time.Millisecond), org: o.id, ip: ips[a.g.ar.intn(len(ips))],
			country: pick(a.g.ar, attackerCountries), rt: rAuthToken, status: 401, bytesIn: 120, bytesOut: 64,
			latency: 15, ua: pick(a.g.ar, noiseAgents)})
	}
	return true
}

func buildMassDelete(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool {
		if !o.healthcare {
			return false
		}
		for _, u := range o.users {
			if permLevel(u.role) >= 3 {
				return true
			}
		}
		return false
	})
	if o == nil {
		return false
	}
	var u *user
	for _, x := range o.users {
		if permLevel(x.role) == 3 || u == nil && permLevel(x.role) == 4 {
			u = x
		}
	}
	var ns *namespace
	for _, x := range o.namespaces {
		if x.class == classPHI {
			ns = x
			break
		}
	}
	if ns == nil {
		return false
	}
	a.a.Group["actor_id"] = u.id
	a.a.Group["org_id"] = o.id
	a.a.Group["namespace"] = ns.id
	for i := 0; i < 40; i++ {
		a.audit(rec{ts: a.at(time.Duration(i) * 9 * time.Second), org: o.id, actor: u.id, actorType: "user", ip: u.ips[0],
			action: "document.delete", resType: "document", ns: ns, doc: uint32(1 + a.g.ar.intn(ns.docs)), outcome: "success"})
	}
	return true
}

func buildNamespaceWipe(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool { return len(o.namespaces) >= 4 })
	if o == nil {
		return false
	}
	u := o.admins[len(o.admins)-1]
	ip := a.ip()
	a.a.Group["org_id"] = o.id
	a.a.Group["actor_id"] = u.id
	a.a.Group["ip"] = ip
	a.audit(rec{ts: a.at(0), org: o.id, actor: u.id, actorType: "user", ip: ip, action: "auth.login", resType: "session",
		outcome: "success"})
	for i := 0; i < 4; i++ {
		ns := o.namespaces[len(o.namespaces)-1-i]
		a.audit(rec{ts: a.at(2*time.Minute + time.Duration(i)*4*time.Minute), org: o.id, actor: u.id, actorType: "user",
			ip: ip, action: "namespace.delete", resType: "namespace", resID: ns.id, ns: ns, outcome: "success"})
	}
	return true
}

func buildNewKeyDelete(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool { return true })
	if o == nil {
		return false
	}
	u := o.admins[0]
	ip, c := a.ip(), a.country()
	id := "key_" + strconv.FormatUint(a.g.ar.u64()>>40|1<<23, 16)
	ns := o.namespaces[0]
	a.a.Group["org_id"] = o.id
	a.a.Group["actor_id"] = u.id
	a.a.Group["api_key_id"] = id
	a.a.Group["ip"] = ip
	a.audit(rec{ts: a.at(0), org: o.id, actor: u.id, actorType: "user", ip: ip, action: "api_key.create",
		resType: "api_key", resID: id, changes: `{"permission":[null,"DELETE"],"namespaces":[null,["*"]]}`, outcome: "success"})
	for i := 0; i < 15; i++ {
		ts := a.at(2*time.Minute + time.Duration(i)*17*time.Second)
		doc := uint32(1 + a.g.ar.intn(ns.docs))
		a.req(rec{ts: ts, org: o.id, key: id, perm: permDelete, ip: ip, country: c, rt: rDocDelete, ns: ns, doc: doc,
			status: 204, latency: 25, ua: "curl/8.5.0"})
		a.audit(rec{ts: ts + 5e6, org: o.id, actor: id, actorType: "api_key", key: id, perm: permDelete, ip: ip,
			action: "document.delete", resType: "document", ns: ns, doc: doc, outcome: "success"})
	}
	return true
}

func buildPrivEscalation(a *attackRun) bool {
	o := a.findOrg(func(o *org) bool {
		for _, u := range o.users {
			if u.role == permRead {
				return true
			}
		}
		return false
	})
	if o == nil {
		return false
	}
	admin := o.admins[0]
	var target *user
	for _, u := range o.users {
		if u.role == permRead {
			target = u
			break
		}
	}
	ip := a.ip()
	a.a.Group["org_id"] = o.id
	a.a.Group["actor_id"] = admin.id
	a.a.Group["ip"] = ip
	a.audit(rec{ts: a.at(0), org: o.id, actor: admin.id, actorType: "user", ip: ip, action: "auth.login",
		resType: "session", outcome: "success"})
	a.audit(rec{ts: a.at(time.Minute), org: o.id, actor: admin.id, actorType: "user", ip: ip, action: "member.role_change",
		resType: "member", resID: target.id, changes: `{"role":["READ","ADMIN"]}`, outcome: "success"})
	a.audit(rec{ts: a.at(5 * time.Minute), org: o.id, actor: target.id, actorType: "user", ip: ip, action: "api_key.create",
		resType: "api_key", resID: "key_" + strconv.FormatUint(a.g.ar.u64()>>40|1<<23, 16),
		changes: `{"permission":[null,"ADMIN"],"namespaces":[null,["*"]]}`, outcome: "success"})
	return true
}

func buildMetrics(a *attackRun) bool {
	ip, c := a.ip(), a.country()
	a.a.Group["ip"] = ip
	for i := 0; i < 15; i++ {
		rt, status, out := rMetrics, 403, int64(90)
		switch {
		case i%5 == 2:
			rt, status, out = rIntMetrics, 200, 52000
		case i%5 == 4:
			rt = rDebugPprof
		}
		a.req(rec{ts: a.at(time.Duration(i) * 12 * time.Second), org: internalOrg, ip: ip, country: c, rt: rt,
			status: status, bytesOut: out, latency: 15, ua: "zgrab/0.x"})
	}
	return true
}

var metadataPaths = []string{
	"source_url=http%3A%2F%2F169.254.169.254%2FcomputeMetadata%2Fv1%2Finstance%2Fservice-accounts%2Fdefault%2Ftoken",
	"source_url=http://169.254.169.254/latest/meta-data/iam/security-credentials/",
	"source_url=http%3A%2F%2Fmetadata.google.internal%2FcomputeMetadata%2Fv1%2F",
	"source_url=http://2852039166/computeMetadata/v1/",
	"source_url=http://0xA9FEA9FE/latest/meta-data/",
	"source_url=http://[::ffff:a9fe:a9fe]/latest/meta-data/",
}

func buildMetadata(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool { return permLevel(k.perm) >= 2 && nsOf(k, classPublic, classInternal) != nil })
	if k == nil {
		return false
	}
	ip, c := a.ip(), a.country()
	ns := nsOf(k, classPublic, classInternal)
	a.keyGroup(k)
	a.a.Group["ip"] = ip
	for i, q := range metadataPaths {
		a.req(rec{ts: a.at(time.Duration(i) * 20 * time.Second), org: k.org.id, key: k.id, perm: k.perm, ip: ip,
			country: c, rt: rUploadURL, ns: ns, pathOver: "/v1/namespaces/" + ns.id + "/uploads/from-url?" + q,
			status: 400, bytesIn: 0, bytesOut: 130, latency: 35, ua: "python-requests/2.31.0"})
	}
	return true
}

func buildRateLimit(a *attackRun) bool {
	k := a.findKey(func(k *apiKey) bool {
		return k.peakRate < 0.5 && k.ns[0].class != classPHI && !a.g.taken(k.org)
	})
	if k == nil {
		return false
	}
	a.g.take(k.org)
	a.keyGroup(k)
	a.a.Group["operation"] = "search"
	ns := k.ns[0]
	for i := 0; i < 1200; i++ {
		rc := rec{ts: a.at(time.Duration(i) * 600 * time.Millisecond), org: k.org.id, key: k.id, perm: k.perm,
			ip: k.ips[0], country: k.country, rt: rSearch, ns: ns, bytesIn: 700, ua: k.ua}
		if i%5 < 2 {
			rc.status, rc.bytesOut, rc.latency = 429, 95, 8
		} else {
			rc.status, rc.bytesOut = 200, int64(a.g.ar.lognormal(8e3, 0.6))
		}
		a.req(rc)
	}
	return true
}

func buildOutage(a *attackRun) bool {
	from := a.t
	a.g.errorMods = append(a.g.errorMods, errorMod{op: "search", from: from, to: from + int64(4*time.Minute), p: 0.6, attack: 0})
	a.a.Group["operation"] = "search"
	a.a.Note = "the errors are the platform's own search traffic; events counts the failed requests"
	a.span(from)
	a.span(from + int64(4*time.Minute) - 1e6)
	a.n = 0
	return true
}
