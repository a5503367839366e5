package cloudflare

import (
	"net/netip"
	"testing"
)

func TestEdgePrefixAndValue(t *testing.T) {
	tests := []struct {
		in, value string // value "" means the range is refused
	}{
		{"203.0.113.7/32", "203.0.113.7"},
		{"::ffff:203.0.113.7/128", "203.0.113.7"},
		{"2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd/128", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:aaaa::/80", "2001:db8:1:2::/64"},
		{"203.0.113.0/24", ""},
		{"2001:db8::/48", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := edgePrefix(netip.MustParsePrefix(tt.in))
			if tt.value == "" {
				if err == nil {
					t.Fatalf("edgePrefix = %v, want an error", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := edgeValue(p); got != tt.value {
				t.Errorf("edgeValue = %q, want %q", got, tt.value)
			}
			// What Cloudflare returns reads back as the same range.
			if back, ok := parseEdgeValue(tt.value); !ok || back != p {
				t.Errorf("parseEdgeValue(%q) = %v, %v, want %v", tt.value, back, ok, p)
			}
		})
	}
}

func TestParseEdgeValue(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" when unreadable
	}{
		{"198.51.100.1", "198.51.100.1/32"},
		{"198.51.100.0/24", "198.51.100.0/24"},
		{"2001:DB8::1", "2001:db8::1/128"},
		{"2001:db8:0:0:1::/64", "2001:db8::/64"},
		{"::ffff:198.51.100.1", "198.51.100.1/32"},
		{"example.com", ""},
		{"10.0.0.0/33", ""},
	}
	for _, tt := range tests {
		got, ok := parseEdgeValue(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("parseEdgeValue(%q) = %v, want unreadable", tt.in, got)
			}
			continue
		}
		if !ok || got.String() != tt.want {
			t.Errorf("parseEdgeValue(%q) = %v, %v, want %s", tt.in, got, ok, tt.want)
		}
	}
}
