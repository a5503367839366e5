package opshttp

import "net/netip"

// allowlist is the set of client networks the listener serves, each in the
// form normalize gives it.
type allowlist []netip.Prefix

// permits reports whether the TCP peer address ("ip:port", as in
// http.Request.RemoteAddr) lies in one of the networks, and returns the
// address as matched. An IPv4-mapped IPv6 peer (a dual-stack socket
// accepting IPv4) is matched as its IPv4 address, and an IPv6 zone
// (fe80::1%eth0) is ignored: a network is allowed whatever the interface.
// A peer address that does not parse is refused.
func (a allowlist) permits(remoteAddr string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	// Prefix.Contains never matches a zoned address, nor a mapped address
	// against an IPv4 prefix, so both are removed first.
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range a {
		if p.Contains(ip) {
			return ip, true
		}
	}
	return ip, false
}

// normalize masks p and turns an IPv4-mapped IPv6 network
// (::ffff:10.0.0.0/104) into the IPv4 network it means (10.0.0.0/8), since
// peers are matched unmapped.
func normalize(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// internal reports whether p lies wholly inside loopback, the private
// IPv4 ranges, IPv6 unique-local or IPv6 link-local addresses. IPv4
// link-local (169.254.0.0/16) is deliberately not internal: it holds cloud
// metadata servers.
func internal(p netip.Prefix) bool {
	for _, q := range append(DefaultAllowCIDRs(),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("fe80::/10"),
	) {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
