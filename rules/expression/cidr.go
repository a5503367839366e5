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
	a, ok := parseAddr(ip)
	return ok && p.Contains(a.Unmap())
}

// parseAddr is netip.ParseAddr without the zone and without an error value:
// ParseAddr allocates its error, and the address of a request is
// attacker-controlled, so a rule must not allocate per malformed address.
// It accepts exactly what ParseAddr accepts (FuzzParseAddr checks this);
// the code follows Go's net/netip (BSD licence).
func parseAddr(s string) (netip.Addr, bool) {
	// ParseAddr decides the family by the first '.', ':' or '%'.
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '.':
			var ip [4]byte
			if !parseIPv4Fields(s, ip[:]) {
				return netip.Addr{}, false
			}
			return netip.AddrFrom4(ip), true
		case ':':
			if j := strings.IndexByte(s, '%'); j >= 0 {
				if j == len(s)-1 {
					return netip.Addr{}, false // empty zone
				}
				s = s[:j]
			}
			return parseIPv6(s)
		case '%':
			return netip.Addr{}, false
		}
	}
	return netip.Addr{}, false
}

// parseIPv4Fields parses a dotted quad into fields[:4]: four decimal octets
// without leading zeros.
func parseIPv4Fields(s string, fields []byte) bool {
	var val, pos, digits int
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			if digits == 1 && val == 0 {
				return false // leading zero
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return false
			}
		case c == '.':
			if i == 0 || i == len(s)-1 || s[i-1] == '.' || pos == 3 {
				return false
			}
			fields[pos] = byte(val)
			pos++
			val, digits = 0, 0
		default:
			return false
		}
	}
	if pos < 3 {
		return false
	}
	fields[3] = byte(val)
	return true
}

// parseIPv6 parses an IPv6 address without zone.
func parseIPv6(s string) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // position of the ellipsis in ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off := 0
		acc := uint32(0)
		for ; off < len(s); off++ {
			c := s[off]
			switch {
			case c >= '0' && c <= '9':
				acc = acc<<4 + uint32(c-'0')
			case c >= 'a' && c <= 'f':
				acc = acc<<4 + uint32(c-'a'+10)
			case c >= 'A' && c <= 'F':
				acc = acc<<4 + uint32(c-'A'+10)
			default:
				goto group
			}
			if off > 3 || acc > 0xffff {
				return netip.Addr{}, false
			}
		}
	group:
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' {
			// An embedded IPv4 address ends the string and fills the
			// last four bytes.
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return netip.Addr{}, false
			}
			if !parseIPv4Fields(s, ip[i:i+4]) {
				return netip.Addr{}, false
			}
			s = ""
			i += 4
			break
		}
		ip[i] = byte(acc >> 8)
		ip[i+1] = byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false // a second ::
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		for j := i - 1; j >= ellipsis; j-- {
			ip[j+n] = ip[j]
		}
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // :: must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}
