package authn_test

import (
	"net/netip"
	"testing"

	"github.com/sowerproject/sower/authn"
)

func TestClientAddr(t *testing.T) {
	t.Parallel()
	proxies, err := authn.ParseNetworks([]string{"10.0.0.0/8", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		remote  string
		xff     []string
		trusted authn.Networks
		want    string
	}{
		"no proxies: header ignored":         {"203.0.113.9", []string{"198.51.100.1"}, nil, "203.0.113.9"},
		"untrusted peer: header ignored":     {"203.0.113.9", []string{"198.51.100.1"}, proxies, "203.0.113.9"},
		"trusted peer: right-most untrusted": {"10.1.1.1", []string{"1.1.1.1, 198.51.100.1"}, proxies, "198.51.100.1"},
		"chain of trusted proxies":           {"10.1.1.1", []string{"198.51.100.1, 192.168.1.1", "10.2.2.2"}, proxies, "198.51.100.1"},
		"all trusted: left-most":             {"10.1.1.1", []string{"10.3.3.3, 10.2.2.2"}, proxies, "10.3.3.3"},
		"malformed hop stops the walk":       {"10.1.1.1", []string{"198.51.100.1, junk"}, proxies, "10.1.1.1"},
		"no header from a trusted proxy":     {"10.1.1.1", nil, proxies, "10.1.1.1"},
		"mapped IPv4 is IPv4":                {"::ffff:10.1.1.1", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := authn.ClientAddr(netip.MustParseAddr(tc.remote), tc.xff, tc.trusted)
			if got.String() != tc.want {
				t.Fatalf("ClientAddr = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	nets, err := authn.ParseNetworks([]string{"10.1.2.3", "192.168.0.0/255.255.0.0", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, ok := range map[string]bool{
		"10.1.2.3": true, "10.1.2.4": false, "192.168.77.1": true, "2001:db8::1": true,
		"::ffff:10.1.2.3": true, "not-an-ip": false, "": false,
	} {
		err := authn.CheckOrigin(nets, addr)
		if (err == nil) != ok {
			t.Errorf("CheckOrigin(%q) = %v, want allowed %v", addr, err, ok)
		}
		if err != nil && !authn.IsReason(err, authn.ReasonOrigin) {
			t.Errorf("CheckOrigin(%q) reason %v, want %s", addr, err, authn.ReasonOrigin)
		}
	}
	if err := authn.CheckOrigin(nil, "anything"); err != nil {
		t.Errorf("no restriction refused: %v", err)
	}
	if _, err := authn.ParseNetworks([]string{"10.0.0.0/33"}); err == nil {
		t.Error("ParseNetworks accepted /33")
	}
}
