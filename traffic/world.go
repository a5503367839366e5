package traffic

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// The platform the generator simulates: organizations of very different
// sizes in several time zones, each with namespaces of every data
// classification, members with roles and API keys with permissions, each
// key with its habits (operation mix, namespaces, addresses, client).

// Permission levels of keys and roles of members (information security
// policy 4.2).
const (
	permRead   = "READ"
	permWrite  = "WRITE"
	permDelete = "DELETE"
	permAdmin  = "ADMIN"
)

func permLevel(p string) int {
	switch p {
	case permRead:
		return 1
	case permWrite:
		return 2
	case permDelete:
		return 3
	case permAdmin:
		return 4
	}
	return 0
}

// Data classifications (policy 3).
const (
	classPublic       = "PUBLIC"
	classInternal     = "INTERNAL"
	classConfidential = "CONFIDENTIAL"
	classPHI          = "PHI"
)

type namespace struct {
	id    string
	class string
	org   *org
	docs  int // documents in it; document ids are doc_<base36 n>
}

// Key profiles: what a key is used for decides its operation mix and client.
const (
	profileApp    = iota // a customer application: search and reads
	profileIngest        // a pipeline: uploads, extraction, writes
	profileReader        // an analytics or export job: reads and downloads
	profileSync          // a sync service: metadata and small writes
	numProfiles
)

type apiKey struct {
	id      string
	org     *org
	perm    string
	profile int
	weight  float64 // share of its org's traffic (before activity windows)
	ips     []string
	ns      []*namespace
	nsCum   []float64
	ua      string
	country string

	// Lifetime within the generated span, Unix ns: benign traffic only
	// between from and until.
	from, until int64
	// ADMIN keys are automation: they poll the management API from the
	// org's small fixed set of admin addresses.
	pollEvery int64
	nextPoll  int64
	pollN     int

	// reserved keys are never used by benign traffic (the dormant key).
	reserved bool
	// Traffic of the key per second at full org activity, for 429 odds.
	peakRate float64
}

type user struct {
	id   string
	org  *org
	role string
	ips  []string
}

type org struct {
	id         string
	weight     float64 // share of platform traffic at equal activity
	tz         float64 // hours east of UTC
	country    string
	healthcare bool
	namespaces []*namespace
	keys       []*apiKey
	// drawKeys are the keys benign request traffic is spread over.
	drawKeys []*apiKey
	drawCum  []float64
	users    []*user
	admins   []*user // users with the ADMIN role
	office   []string
	adminIPs []string
	mean     float64 // mean of its activity curve over a weekday
}

type world struct {
	orgs     []*org
	keys     []*apiKey
	users    []*user
	internal []string // Prometheus scrapers, inside 10.0.0.0/8 and 172.16.0.0/12
	lbIPs    []string // the load balancer's health checkers (public ranges)
	usedIPs  map[string]bool
	r        *rng
	dormant  *apiKey
	// adminKeys are every org's ADMIN automation keys.
	adminKeys []*apiKey
	// noise are internet addresses that send keyless requests more than once.
	noise []string
}

var zones = []struct {
	tz        float64
	countries []string
}{
	{-8, []string{"US"}}, {-6, []string{"US", "MX"}}, {-5, []string{"US", "CA"}}, {-3, []string{"BR"}},
	{0, []string{"GB", "IE"}}, {1, []string{"DE", "FR", "NL", "SE"}}, {5.5, []string{"IN"}},
	{8, []string{"SG"}}, {9, []string{"JP"}}, {10, []string{"AU"}},
}

// zoneWeights favours the Americas and Europe, as a US-based API would see.
var zoneWeights = cumulative([]float64{4, 2, 6, 1, 3, 4, 1.5, 1, 1, 1})

var clients = [numProfiles][]string{
	profileApp:    {"client-js/2.1.3", "client-js/2.0.9", "client-python/1.4.0", "Mozilla/5.0 (compatible; acme-app/3.2)"},
	profileIngest: {"client-python/1.4.0", "client-python/1.3.2", "Go-http-client/2.0", "airflow-provider/0.9.1"},
	profileReader: {"client-python/1.4.0", "python-requests/2.32.3", "client-java/0.8.0"},
	profileSync:   {"Go-http-client/1.1", "client-go/0.6.2", "okhttp/4.12.0"},
}

const numOrgs = 30

func newWorld(seed uint64) *world {
	w := &world{r: newRNG(seed, 1), usedIPs: map[string]bool{}}
	r := w.r
	ids := map[string]bool{}
	uniq := func(prefix string, digits int) string {
		for {
			var s string
			if digits == 0 {
				s = prefix + strconv.Itoa(r.between(2, 999))
			} else {
				s = fmt.Sprintf("%s%0*x", prefix, digits, r.u64()>>(64-4*digits))
			}
			if !ids[s] {
				ids[s] = true
				return s
			}
		}
	}
	for i := 0; i < numOrgs; i++ {
		o := &org{id: uniq("org_", 0)}
		// A long tail of sizes: the largest org sends about a sixth of all
		// traffic, the smallest a few hundredths of a percent.
		o.weight = math.Pow(float64(i+1), -1.05) * math.Exp(0.25*r.norm())
		z := zones[weighted(r, zoneWeights)]
		o.tz = z.tz
		o.country = pick(r, z.countries)
		o.healthcare = r.chance(0.3) || i == 2 || i == 7
		w.orgs = append(w.orgs, o)
	}
	sort.SliceStable(w.orgs, func(i, j int) bool { return w.orgs[i].weight > w.orgs[j].weight })

	for rank, o := range w.orgs {
		size := 1 - float64(rank)/numOrgs // 1 for the largest, → 0 for the smallest
		// Addresses: office egress (NAT) and the admins' operations hosts.
		for n := 1 + r.intn(1+int(2*size)); n > 0; n-- {
			o.office = append(o.office, w.publicIP(false))
		}
		for n := 1 + r.intn(2); n > 0; n-- {
			o.adminIPs = append(o.adminIPs, w.publicIP(false))
		}
		// Namespaces.
		nns := 2 + r.intn(3) + int(8*size)
		for j := 0; j < nns; j++ {
			ns := &namespace{id: uniq("ns_", 6), org: o, docs: 200 + r.intn(20000)}
			x := r.float()
			switch {
			case o.healthcare && (j == 1 || x < 0.25):
				ns.class = classPHI
			case x < 0.45:
				ns.class = classConfidential
			case x < 0.85:
				ns.class = classInternal
			default:
				ns.class = classPublic
			}
			o.namespaces = append(o.namespaces, ns)
		}
		// Members.
		nusers := 2 + int(40*size*size) + r.intn(4)
		for j := 0; j < nusers; j++ {
			u := &user{id: "user_" + strconv.Itoa(1000+len(w.users)), org: o}
			switch x := r.float(); {
			case j == 0 || x < 0.08:
				u.role = permAdmin
				o.admins = append(o.admins, u)
			case x < 0.18:
				u.role = permDelete
			case x < 0.6:
				u.role = permWrite
			default:
				u.role = permRead
			}
			if r.chance(0.7) {
				u.ips = []string{pick(r, o.office)}
			} else {
				u.ips = []string{w.publicIP(r.chance(0.15))}
			}
			if r.chance(0.2) {
				u.ips = append(u.ips, w.publicIP(false))
			}
			o.users = append(o.users, u)
			w.users = append(w.users, u)
		}
		// Keys: mostly READ and WRITE, a few DELETE, ADMIN automation in
		// most orgs.
		nkeys := 2 + r.intn(3) + int(34*size*size)
		officeUse := map[string]int{}
		for j := 0; j < nkeys; j++ {
			k := &apiKey{id: uniq("key_", 6), org: o, profile: r.intn(numProfiles)}
			switch x := r.float(); {
			case x < 0.45:
				k.perm = permRead
			case x < 0.85:
				k.perm = permWrite
			default:
				k.perm = permDelete
			}
			switch {
			case k.profile == profileReader:
				k.perm = permRead // exports and analytics only read
			case k.profile == profileIngest && k.perm == permRead:
				k.perm = permWrite // a pipeline writes
			}
			k.weight = math.Exp(0.9 * r.norm())
			k.ua = pick(r, clients[k.profile])
			k.country = o.country
			// Addresses: a service key runs in a cloud region (one or two
			// addresses, sometimes IPv6); a few office-run scripts share the
			// office egress, at most five keys per address.
			office := pick(r, o.office)
			if r.chance(0.3) && officeUse[office] < 5 {
				officeUse[office]++
				k.ips = []string{office}
			} else {
				v6 := r.chance(0.1)
				k.ips = []string{w.publicIP(v6)}
				if r.chance(0.4) {
					k.ips = append(k.ips, w.publicIP(v6))
				}
			}
			k.ns, k.nsCum = w.scope(o, 1+r.intn(4))
			o.keys = append(o.keys, k)
		}
		if rank < 24 {
			for n := 1 + r.intn(1+int(2*size)); n > 0; n-- {
				k := &apiKey{id: uniq("key_", 6), org: o, perm: permAdmin, profile: profileSync,
					ua: "vigil-ops-automation/1.0", country: o.country, weight: 0}
				k.ua = pick(r, []string{"terraform-provider/2.4.1", "Go-http-client/2.0", "ops-sync/1.7"})
				k.ips = o.adminIPs
				k.pollEvery = int64(45+r.intn(75)) * 1e9
				k.ns, k.nsCum = w.scope(o, len(o.namespaces))
				o.keys = append(o.keys, k)
				w.adminKeys = append(w.adminKeys, k)
			}
		}
		w.keys = append(w.keys, o.keys...)
	}
	// The dormant key: a READ key of the smallest org, last used 95 days
	// before the generated span; only the dormant-key attack uses it.
	small := w.orgs[len(w.orgs)-1]
	w.dormant = &apiKey{id: uniq("key_", 6), org: small, perm: permRead, profile: profileReader,
		ua: "python-requests/2.25.1", country: small.country, reserved: true}
	w.dormant.ips = []string{w.publicIP(false)}
	w.dormant.ns, w.dormant.nsCum = w.scope(small, 1)
	small.keys = append(small.keys, w.dormant)
	w.keys = append(w.keys, w.dormant)

	w.internal = []string{"10.20.0.11", "10.20.0.12", "10.20.3.40", "172.18.0.5"}
	w.lbIPs = []string{"35.191.10.14", "35.191.7.203", "130.211.1.77", "130.211.3.9"}
	return w
}

// scope picks n of an org's namespaces (the first is the key's main one).
func (w *world) scope(o *org, n int) ([]*namespace, []float64) {
	if n > len(o.namespaces) {
		n = len(o.namespaces)
	}
	perm := make([]int, len(o.namespaces))
	for i := range perm {
		perm[i] = i
	}
	for i := len(perm) - 1; i > 0; i-- {
		j := w.r.intn(i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	ns := make([]*namespace, n)
	ws := make([]float64, n)
	for i := 0; i < n; i++ {
		ns[i] = o.namespaces[perm[i]]
		ws[i] = 1 / float64(i+1)
	}
	return ns, cumulative(ws)
}

// publicIP returns a fresh address outside private, shared, loopback,
// link-local, documentation, multicast and reserved ranges (IPv6: inside
// the documentation prefix 2001:db8::/32), never handed out before.
func (w *world) publicIP(v6 bool) string { return w.publicIPFrom(w.r, v6) }

// publicIPFrom is publicIP drawing from r, so that attacks take addresses
// without changing the benign traffic's random sequence.
func (w *world) publicIPFrom(r *rng, v6 bool) string {
	for {
		var s string
		if v6 {
			x := r.u64()
			s = fmt.Sprintf("2001:db8:%x:%x::%x", x>>48, (x>>32)&0xffff, x&0xfff+1)
		} else {
			x := uint32(r.u64())
			a, b := byte(x>>24), byte(x>>16)
			switch {
			case a == 0 || a == 10 || a == 127 || a >= 224:
				continue
			case a == 100 && b >= 64 && b < 128, a == 169 && b == 254, a == 172 && b >= 16 && b < 32,
				a == 192 && b == 168, a == 192 && b == 0, a == 198 && (b == 18 || b == 19 || b == 51),
				a == 203 && b == 0, a == 35 && b == 191, a == 130 && b == 211:
				continue
			}
			if x&0xff == 0 || x&0xff == 255 {
				continue
			}
			s = fmt.Sprintf("%d.%d.%d.%d", a, b, byte(x>>8), byte(x))
		}
		if !w.usedIPs[s] {
			w.usedIPs[s] = true
			return s
		}
	}
}

// activity is an org's relative traffic at a time: a daily curve in the
// org's local time (quiet at night, peaking mid-afternoon) and lower at
// weekends. Its weekday mean is about 0.55.
func (o *org) activity(ns int64) float64 {
	sec := ns / 1e9
	local := float64(sec%86400)/3600 + o.tz
	day := (sec/86400 + 4) % 7 // 0 = Sunday (1970-01-01 was a Thursday)
	if local < 0 {
		local += 24
		day = (day + 6) % 7
	} else if local >= 24 {
		local -= 24
		day = (day + 1) % 7
	}
	d := local - 14
	a := 0.22 + 0.78*math.Exp(-d*d/(2*3.6*3.6))
	if day == 0 || day == 6 {
		a *= 0.5
	}
	return a
}

// weekdayMean is the mean of activity over a weekday (numerically).
func (o *org) weekdayMean() float64 {
	// 2026-01-05 was a Monday.
	base := int64(1767571200) * 1e9
	var s float64
	for m := 0; m < 1440; m++ {
		s += o.activity(base + int64(m)*60e9 - int64(o.tz*3600e9))
	}
	return s / 1440
}

// finish computes the traffic shares once key lifetimes are known.
func (w *world) finish(rate float64) {
	var total float64
	for _, o := range w.orgs {
		o.mean = o.weekdayMean()
		total += o.weight * o.mean
	}
	for _, o := range w.orgs {
		o.weight = o.weight / total * rate // requests/s at activity 1
		o.drawKeys = o.drawKeys[:0]
		var ws []float64
		var wsum float64
		for _, k := range o.keys {
			if k.perm == permAdmin || k.reserved {
				continue
			}
			o.drawKeys = append(o.drawKeys, k)
			ws = append(ws, k.weight)
			wsum += k.weight
		}
		o.drawCum = cumulative(ws)
		for _, k := range o.drawKeys {
			k.peakRate = o.weight * k.weight / wsum
		}
	}
}
