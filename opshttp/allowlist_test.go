package opshttp

import (
	"net/netip"
	"testing"
)

func TestAllowlistDecidesOnThePeerAddress(t *testing.T) {
	only := func(cidrs ...string) allowlist {
		var a allowlist
		for _, c := range cidrs {
			a = append(a, normalize(netip.MustParsePrefix(c)))
		}
		return a
	}
	defaults := allowlist(DefaultAllowCIDRs())

	tests := []struct {
		name   string
		allow  allowlist
		remote string
		want   bool
	}{
		{"IPv4 loopback is allowed by default", defaults, "127.0.0.1:5555", true},
		{"the whole 127/8 is loopback", defaults, "127.10.0.1:5555", true},
		{"a 10/8 address is allowed by default", defaults, "10.1.2.3:5555", true},
		{"the top of 172.16/12 is allowed by default", defaults, "172.31.255.255:5555", true},
		{"just past 172.16/12 is refused", defaults, "172.32.0.1:5555", false},
		{"a 192.168/16 address is allowed by default", defaults, "192.168.1.1:5555", true},
		{"a public address is refused", defaults, "203.0.113.9:5555", false},
		{"the cloud metadata address is refused", defaults, "169.254.169.254:80", false},
		{"an IPv4-mapped private peer is matched as IPv4", defaults, "[::ffff:10.1.2.3]:5555", true},
		{"an IPv4-mapped public peer is refused", defaults, "[::ffff:203.0.113.9]:5555", false},
		{"IPv6 loopback is allowed by default", defaults, "[::1]:5555", true},
		{"IPv6 link-local is refused by default", defaults, "[fe80::1%eth0]:5555", false},
		{"IPv6 link-local without a zone is refused by default", defaults, "[fe80::1]:5555", false},
		{"IPv6 link-local is allowed when fe80::/10 is listed, whatever the zone", only("fe80::/10"), "[fe80::1%eth0]:5555", true},
		{"IPv6 unique-local is refused by default", defaults, "[fd00::1]:5555", false},
		{"a public IPv6 address is refused", defaults, "[2001:db8::1]:5555", false},
		{"loopback is refused when only 10/8 is listed", only("10.0.0.0/8"), "127.0.0.1:5555", false},
		{"an IPv4-mapped loopback is refused when only 10/8 is listed", only("10.0.0.0/8"), "[::ffff:127.0.0.1]:5555", false},
		{"an IPv4-mapped network in the list matches plain IPv4 peers", only("::ffff:10.0.0.0/104"), "10.200.0.1:5555", true},
		{"an IPv4-mapped network in the list matches mapped peers", only("::ffff:10.0.0.0/104"), "[::ffff:10.200.0.1]:5555", true},
		{"an unmasked network in the list covers its whole range", only("10.1.2.3/8"), "10.200.0.1:5555", true},
		{"an IPv6 catch-all does not admit IPv4 peers", only("::/0"), "10.1.2.3:5555", false},
		{"an address without a port is refused", defaults, "10.1.2.3", false},
		{"a host name is refused", defaults, "localhost:5555", false},
		{"an empty peer is refused", defaults, "", false},
		{"an empty allowlist refuses everything", allowlist{}, "127.0.0.1:5555", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := tt.allow.permits(tt.remote); got != tt.want {
				t.Errorf("permits(%q) = %v, want %v (allowlist %v)", tt.remote, got, tt.want, tt.allow)
			}
		})
	}
}

func TestInternalNetworks(t *testing.T) {
	tests := []struct {
		prefix string
		want   bool
	}{
		{"10.0.0.0/8", true},
		{"10.4.0.0/16", true},
		{"172.16.0.0/12", true},
		{"192.168.0.0/16", true},
		{"127.0.0.0/8", true},
		{"::1/128", true},
		{"fd00::/8", true},
		{"fe80::/10", true},
		{"0.0.0.0/0", false},
		{"10.0.0.0/7", false},
		{"169.254.0.0/16", false},
		{"203.0.113.0/24", false},
		{"::/0", false},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			if got := internal(netip.MustParsePrefix(tt.prefix)); got != tt.want {
				t.Errorf("internal(%s) = %v, want %v", tt.prefix, got, tt.want)
			}
		})
	}
}
