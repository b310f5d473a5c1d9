package hostfactory_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/authn/hostfactory"
)

const hf = "acme:host_factory:apps/factory"

func TestNewMakesDistinctTokensStoredAsHashes(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	spec := hostfactory.Spec{HostFactory: hf, Expiration: now.Add(time.Hour + 500*time.Millisecond), CIDR: []string{"10.1.2.3", "10.0.0.0/8"}}
	a, ta, err := hostfactory.New(spec, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := hostfactory.New(spec, now)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a) < 50 || strings.ToLower(a) != a {
		t.Fatalf("tokens %q and %q: want distinct lower-case tokens of 256 bits", a, b)
	}
	if ta.Hash != hostfactory.Hash(a) || strings.Contains(ta.Hash, a) {
		t.Fatalf("record hash %q is not the token's SHA-256", ta.Hash)
	}
	if !ta.Expiration.Equal(now.Add(time.Hour)) || strings.Join(ta.CIDR, ",") != "10.1.2.3/32,10.0.0.0/8" {
		t.Fatalf("record %+v: want the expiration in whole seconds and canonical networks", ta)
	}
}

func TestNewRefusesWithConjursMessages(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		spec hostfactory.Spec
		want string
	}{
		"past":          {hostfactory.Spec{HostFactory: hf, Expiration: now}, "Value for parameter expiration must be in the future: 2026-01-01T00:00:00Z"},
		"bad network":   {hostfactory.Spec{HostFactory: hf, Expiration: now.Add(time.Hour), CIDR: []string{"1.895.abc.0/32"}}, "Invalid IP address or CIDR range '1.895.abc.0/32'"},
		"bits set":      {hostfactory.Spec{HostFactory: hf, Expiration: now.Add(time.Hour), CIDR: []string{"10.1.0.0/8"}}, "Did you mean '10.0.0.0/8'?"},
		"too many nets": {hostfactory.Spec{HostFactory: hf, Expiration: now.Add(time.Hour), CIDR: make([]string, hostfactory.MaxCIDRs+1)}, "at most 64 networks"},
		"no factory":    {hostfactory.Spec{Expiration: now.Add(time.Hour)}, "is not a resource id"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := hostfactory.New(tc.spec, now)
			if !errors.Is(err, hostfactory.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	exp := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	tok := hostfactory.Token{HostFactory: hf, Expiration: exp, CIDR: []string{"127.0.0.2/32", "10.0.0.0/8"}}
	open := hostfactory.Token{HostFactory: hf, Expiration: exp}
	tests := map[string]struct {
		tok    hostfactory.Token
		addr   string
		at     time.Time
		refuse bool
	}{
		"inside":             {tok, "10.9.8.7", exp.Add(-time.Second), false},
		"single address":     {tok, "127.0.0.2", exp.Add(-time.Second), false},
		"mapped v4":          {tok, "::ffff:10.1.1.1", exp.Add(-time.Second), false},
		"outside":            {tok, "127.0.0.1", exp.Add(-time.Second), true},
		"no address":         {tok, "", exp.Add(-time.Second), true},
		"at expiration":      {open, "127.0.0.1", exp, true},
		"no networks":        {open, "192.0.2.1", exp.Add(-time.Second), false},
		"expired everywhere": {tok, "10.9.8.7", exp.Add(time.Second), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.tok.Check(tc.addr, tc.at)
			if tc.refuse != (err != nil) || (err != nil && !errors.Is(err, hostfactory.ErrRefused)) {
				t.Fatalf("Check(%q, %s) = %v, refuse %v", tc.addr, tc.at, err, tc.refuse)
			}
		})
	}
}
