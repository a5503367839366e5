package traffic

import "math"

// Benign request traffic: every second, a Poisson number of requests is
// spread over the orgs by their current activity and over each org's keys
// by their weight; each key's request follows its profile. ADMIN keys are
// automation polling the management API; internal monitors scrape
// /metrics; the load balancer checks /healthz; the internet knocks without
// a key; a few clients keep using keys that were revoked.

// What a benign request does.
const (
	aSearch = iota
	aDocGet
	aDocList
	aDownload
	aDocCreate
	aDocUpdate
	aDocDelete
	aUpload
	aExtract
	aEmbed
	aListNS
	aGetNS
	aUsage
	aUpdateNS
	numActions
)

var actionRoutes = [numActions]*route{
	aSearch: rSearch, aDocGet: rDocGet, aDocList: rDocList, aDownload: rDocDownload,
	aDocCreate: rDocCreate, aDocUpdate: rDocUpdate, aDocDelete: rDocDelete, aUpload: rUpload,
	aExtract: rExtract, aEmbed: rEmbed, aListNS: rListNS, aGetNS: rGetNS, aUsage: rUsage, aUpdateNS: rUpdateNS,
}

func mix(pairs ...float64) []float64 {
	w := make([]float64, numActions)
	for i := 0; i+1 < len(pairs); i += 2 {
		w[int(pairs[i])] = pairs[i+1]
	}
	return cumulative(w)
}

// Operation mixes per key profile, in percent.
var profileMix = [numProfiles][]float64{
	profileApp: mix(aSearch, 45, aDocGet, 22, aDocList, 8, aDownload, 3, aDocCreate, 4, aDocUpdate, 4,
		aListNS, 5, aGetNS, 5, aUsage, 1, aExtract, 2, aEmbed, 1),
	profileIngest: mix(aUpload, 35, aExtract, 18, aEmbed, 8, aDocCreate, 12, aDocUpdate, 8, aDocGet, 5,
		aListNS, 6, aGetNS, 5, aSearch, 3),
	profileReader: mix(aDocGet, 40, aDownload, 12, aDocList, 15, aSearch, 20, aListNS, 6, aGetNS, 6, aUsage, 1),
	profileSync: mix(aListNS, 15, aGetNS, 20, aDocGet, 25, aDocList, 15, aDocUpdate, 10, aDocCreate, 8,
		aUpdateNS, 1, aUsage, 6),
}

const internalOrg = "org_platform"

func (g *gen) benignSecond(t0 int64) {
	r := g.r
	n := r.poisson(g.totalRate)
	for i := 0; i < n; i++ {
		o := g.w.orgs[weighted(r, g.orgCum)]
		if len(o.drawKeys) == 0 {
			continue
		}
		k := o.drawKeys[weighted(r, o.drawCum)]
		ts := t0 + int64(r.intn(1000))*1e6
		if ts < k.from || (k.until != 0 && ts >= k.until) {
			continue // not created yet, or revoked
		}
		g.keyRequest(k, ts, o.activity(t0))
	}
	// Requests without a key: mistakes, browsers, scanners. Each address
	// sends one to three.
	for n := r.poisson(g.totalRate * 0.004); n > 0; n-- {
		o := g.w.orgs[weighted(r, g.orgCum)]
		ip := g.noiseIP()
		for k := r.between(1, 3); k > 0; k-- {
			rc := rec{ts: t0 + int64(r.intn(1000))*1e6, org: o.id, ip: ip, rt: pick(r, []*route{rListNS, rKeys, rAuthToken}),
				status: 401, bytesOut: 64, latency: int32(5 + r.intn(20)), ua: pick(r, noiseAgents)}
			g.finishRequest(&rc)
		}
	}
	g.adminPolls(t0)
	g.monitors(t0)
	for i := range g.stale {
		s := &g.stale[i]
		for s.next < t0+1e9 && s.next < s.stop {
			if s.next >= t0 {
				k := s.k
				rc := rec{ts: s.next, org: k.org.id, key: k.id, ip: k.ips[0], country: k.country, rt: rListNS,
					status: 401, bytesOut: 88, latency: int32(8 + r.intn(30)), ua: k.ua}
				g.finishRequest(&rc)
			}
			s.next += s.every/2 + int64(r.intn(int(s.every/1e9)+1))*1e9
		}
	}
}

var noiseAgents = []string{"curl/8.5.0", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "python-requests/2.31.0",
	"Go-http-client/1.1", "zgrab/0.x", "Mozilla/5.0 (compatible; Googlebot/2.1)"}

// noiseIP returns an internet address for keyless traffic: usually a fresh
// one, sometimes one of a few hundred that come back.
func (g *gen) noiseIP() string {
	if len(g.w.noise) < 400 || g.r.chance(0.3) {
		ip := g.w.publicIP(g.r.chance(0.1))
		if len(g.w.noise) < 400 {
			g.w.noise = append(g.w.noise, ip)
		}
		return ip
	}
	return pick(g.r, g.w.noise)
}

// keyRequest builds one request of key k at ts.
func (g *gen) keyRequest(k *apiKey, ts int64, act float64) {
	r := g.r
	a := weighted(r, profileMix[k.profile])
	level := permLevel(k.perm)
	switch {
	case level >= 3 && r.chance(0.0004):
		a = aDocDelete
	case level == 2 && r.chance(0.0002):
		a = aDocDelete // a WRITE key trying to delete: denied
	}
	denied := false
	if (a == aDocCreate || a == aDocUpdate || a == aUpload || a == aUpdateNS) && level < 2 ||
		a == aDocDelete && level < 3 || a == aUpdateNS && level < 3 {
		if a != aDocDelete && !r.chance(0.003) {
			a = aDocGet // READ keys read; the rare write attempt is denied
		} else {
			denied = true
		}
	}
	rt := actionRoutes[a]
	rc := rec{ts: ts, org: k.org.id, key: k.id, perm: k.perm, country: k.country, rt: rt, ua: k.ua}
	rc.ip = k.ips[0]
	if len(k.ips) > 1 && r.chance(0.3) {
		rc.ip = k.ips[1+r.intn(len(k.ips)-1)]
	}
	if rt.ns {
		rc.ns = k.ns[weighted(r, k.nsCum)]
		if rt.doc {
			rc.doc = uint32(1 + r.intn(rc.ns.docs))
		}
	}
	if k.profile == profileApp || k.profile == profileIngest {
		rc.extra |= extraTrace
	}

	// Outcome: server errors, rate limiting, auth races, client errors,
	// scope misses, else success.
	p5 := 0.0012
	if rt.op == "compute" {
		p5 = 0.004
	}
	for i := range g.errorMods {
		m := &g.errorMods[i]
		if m.op == rt.op && ts >= m.from && ts < m.to {
			p5 = m.p
			if m.attack >= 0 {
				rc.protect = true
			}
		}
	}
	p429 := math.Min(0.03, 0.004*k.peakRate) * act
	x := r.float()
	// Draw the codes whatever the branch, so that an outage changes
	// statuses but not the random sequence of the rest of the day.
	code5 := []int{500, 502, 503, 503, 504}[r.intn(5)]
	code4 := []int{400, 409, 413, 422}[r.intn(4)]
	switch {
	case denied:
		rc.status = 403
	case x < p5:
		rc.status = code5
		for i := range g.errorMods {
			m := &g.errorMods[i]
			if m.attack >= 0 && m.op == rt.op && ts >= m.from && ts < m.to {
				g.outageCount[m.attack]++
			}
		}
	case x < p5+p429:
		rc.status = 429
	case x < p5+p429+0.0005:
		rc.status = 401
	case x < p5+p429+0.0105 && (rt.doc || rt == rGetNS):
		rc.status = 404
	case x < p5+p429+0.0145 && rt.method != "GET":
		rc.status = code4
	case x < p5+p429+0.0160 && rt.ns:
		rc.status = 403 // outside the key's scope
	default:
		rc.status = successStatus(rt)
	}
	g.shape(&rc, a)
	num := g.finishRequest(&rc)

	// The audit trail records significant actions and, for CONFIDENTIAL
	// and PHI namespaces, every document read (policy 3: access logging).
	action := ""
	switch a {
	case aDocGet, aDownload:
		if c := rc.ns.class; (c == classConfidential || c == classPHI) && rc.status < 300 {
			action = "document.read"
		}
	case aDocCreate, aUpload:
		action = "document.create"
	case aDocUpdate:
		action = "document.update"
	case aDocDelete:
		action = "document.delete"
	case aUpdateNS:
		action = "namespace.update"
	}
	if action == "" || rc.status >= 300 && rc.status != 403 {
		return
	}
	ev := rec{audit: true, ts: rc.ts + int64(rc.latency)*1e5, org: k.org.id, actor: k.id, actorType: "api_key",
		key: k.id, perm: k.perm, ip: rc.ip, action: action, ns: rc.ns, outcome: "success", protect: rc.protect,
		extra: extraReqRef, ref: num}
	ev.resType = "document"
	if a == aUpdateNS {
		ev.resType, ev.resID = "namespace", rc.ns.id
	} else if a != aDocCreate && a != aUpload {
		ev.doc = rc.doc
	} else {
		ev.doc = uint32(rc.ns.docs + 1 + r.intn(1000))
	}
	if rc.status == 403 {
		ev.outcome = "denied"
	}
	g.finishAudit(&ev)
}

func successStatus(rt *route) int {
	switch rt.method {
	case "POST":
		if rt.op == "upload" {
			return 202
		}
		if rt.op == "data" {
			return 201
		}
	case "DELETE":
		return 204
	}
	return 200
}

// shape fills sizes and latency for the action and outcome.
func (g *gen) shape(rc *rec, a int) {
	r := g.r
	var in, out, lat float64
	switch a {
	case aSearch:
		in, out, lat = 300+float64(r.intn(1700)), r.lognormal(8e3, 0.8), r.lognormal(45, 0.5)
	case aDocGet:
		out, lat = r.lognormal(12e3, 1.1), r.lognormal(12, 0.5)
	case aDocList:
		out, lat = 2e3+float64(r.intn(28e3)), r.lognormal(20, 0.4)
	case aDownload:
		out = math.Min(r.lognormal(400e3, 1.5), 200e6)
		lat = r.lognormal(60, 0.4) + out/50e3
	case aDocCreate, aDocUpdate:
		in, out, lat = r.lognormal(6e3, 1), 300+float64(r.intn(200)), r.lognormal(25, 0.5)
	case aDocDelete:
		out, lat = 0, r.lognormal(15, 0.4)
	case aUpload:
		in = math.Min(r.lognormal(1.5e6, 1.3), 500e6)
		out, lat = 350, r.lognormal(150, 0.5)+in/30e3
	case aExtract, aEmbed:
		in, out, lat = r.lognormal(8e3, 1), r.lognormal(5e3, 0.8), r.lognormal(700, 0.7)
	default:
		out, lat = r.lognormal(2e3, 0.7), r.lognormal(6, 0.5)
	}
	if rc.status >= 400 {
		out, lat = 60+float64(r.intn(140)), 1+r.float()*6
		if rc.status == 504 {
			lat = 30000
		}
		if rc.status >= 500 && rc.status != 504 {
			lat = r.lognormal(40, 0.5)
		}
	}
	rc.bytesIn, rc.bytesOut = int64(in), int64(out)
	if lat > 50000 {
		lat = 50000
	}
	rc.latency = int32(lat * 10)
}

// finishRequest gives a request its number, timestamp form and log time,
// and queues it; it returns the request's number.
func (g *gen) finishRequest(rc *rec) uint64 {
	r := g.r
	rc.num = g.reqNum
	g.reqNum++
	rc.tsForm = g.tsForm(&rc.ts)
	if r.chance(0.12) {
		rc.extra |= extraPop
	}
	rc.logAt = rc.ts + int64(rc.latency)*1e5 + int64(r.intn(5))*1e6
	g.push(*rc)
	return rc.num
}

func (g *gen) finishAudit(ev *rec) {
	ev.audit = true
	ev.num = g.evtNum
	g.evtNum++
	ev.tsForm = g.tsForm(&ev.ts)
	ev.logAt = ev.ts + int64(50+g.r.intn(900))*1e6
	g.push(*ev)
}

// tsForm picks how a timestamp is written: mostly RFC 3339 with
// milliseconds, some integer Unix milliseconds, a few whole seconds (the
// time is truncated to match).
func (g *gen) tsForm(ts *int64) uint8 {
	*ts -= *ts % 1e6
	switch x := g.r.intn(100); {
	case x < 80:
		return tsMillis
	case x < 95:
		return tsUnixMs
	default:
		*ts -= *ts % 1e9
		return tsSeconds
	}
}

// adminPolls: ADMIN keys are automation that reads the management API
// every minute or two, alternating over the org's admin addresses.
func (g *gen) adminPolls(t0 int64) {
	r := g.r
	for _, k := range g.w.adminKeys {
		if k.nextPoll == 0 {
			k.nextPoll = g.start + int64(r.intn(int(k.pollEvery/1e9)))*1e9
		}
		for k.nextPoll < t0+1e9 {
			ts := k.nextPoll
			k.nextPoll += k.pollEvery/2 + int64(r.intn(int(k.pollEvery/1e9)))*1e9
			if ts < t0 || ts < k.from || (k.until != 0 && ts >= k.until) {
				continue
			}
			ip := k.ips[k.pollN%len(k.ips)]
			k.pollN++
			for i, rt := range []*route{rKeys, rMembers, rListNS} {
				if i > 0 && r.chance(0.5) {
					continue
				}
				rc := rec{ts: ts + int64(i)*int64(30+r.intn(200))*1e6, org: k.org.id, key: k.id, perm: k.perm, ip: ip,
					country: k.country, rt: rt, ua: k.ua, status: 200, protect: true}
				g.shape(&rc, aListNS)
				g.finishRequest(&rc)
			}
		}
	}
}

// monitors: Prometheus scrapes /metrics from inside the cluster every 15s
// and the load balancer checks /healthz every 10s.
func (g *gen) monitors(t0 int64) {
	r := g.r
	sec := (t0 - g.start) / 1e9
	for i, ip := range g.w.internal {
		if (sec+int64(i)*4)%15 == 0 {
			rc := rec{ts: t0 + int64(r.intn(1000))*1e6, org: internalOrg, ip: ip, rt: rMetrics, status: 200,
				bytesOut: 40e3 + int64(r.intn(8e3)), latency: int32(20 + r.intn(60)), ua: "Prometheus/2.53.1"}
			g.finishRequest(&rc)
		}
	}
	for i, ip := range g.w.lbIPs {
		if (sec+int64(i)*3)%10 == 0 {
			rc := rec{ts: t0 + int64(r.intn(1000))*1e6, org: internalOrg, ip: ip, rt: rHealth, status: 200,
				bytesOut: 2, latency: int32(3 + r.intn(10)), ua: "GoogleHC/1.0"}
			g.finishRequest(&rc)
		}
	}
}
