package expression

import (
	"net/netip"
	"strings"
)

// parseCIDR parses cidr()'s literal. An IPv4-mapped IPv6 prefix of at least
// 96 bits (::ffff:10.0.0.0/104) is turned into the IPv4 prefix it denotes,
// because addresses are unmapped before the test (see cidrContains). Host
// bits are ignored: "10.1.2.3/8" means 10.0.0.0/8.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// cidrContains reports whether ip lies in p. An address that does not parse
// is in no prefix. IPv4-mapped IPv6 addresses (::ffff:10.1.2.3) are tested as
// the IPv4 address they carry, and an IPv6 zone (fe80::1%eth0) is ignored,
// so that the way a proxy happened to print an address does not let it slip
// past a rule. It does not allocate.
func cidrContains(p netip.Prefix, ip string) bool {
	// Drop the zone ourselves: netip would intern it (an allocation per
	// distinct zone) only for Prefix.Contains to reject zoned addresses.
	// ParseAddr decides the family by the first '.', ':' or '%'; a zone
	// belongs to the IPv6 form only, and must not be empty.
scan:
	for i := 0; i < len(ip); i++ {
		switch ip[i] {
		case '.':
			break scan
		case ':':
			if j := strings.IndexByte(ip[i:], '%'); j >= 0 {
				if i+j == len(ip)-1 {
					return false
				}
				ip = ip[:i+j]
			}
			break scan
		case '%':
			return false
		}
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	return p.Contains(a.Unmap())
}
