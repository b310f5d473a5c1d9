package policy

import (
	"errors"
	"testing"
)

func TestParseRef(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		in, account, kind string
		want              ID
		wantErr           bool
	}{
		"full":                {in: "acme:host:app/web", want: NewID("acme", "host", "app/web")},
		"identifier with ':'": {in: "acme:variable:a:b", want: NewID("acme", "variable", "a:b")},
		"kind and identifier": {in: "user:alice", account: "acme", want: NewID("acme", "user", "alice")},
		"identifier only":     {in: "alice", account: "acme", kind: "user", want: NewID("acme", "user", "alice")},
		"identifier, no kind": {in: "alice", account: "acme", wantErr: true},
		"empty kind":          {in: "acme::x", wantErr: true},
		"empty":               {in: "", account: "acme", kind: "user", wantErr: true},
		"empty identifier":    {in: "user:", account: "acme", wantErr: true},
		"empty account, full": {in: ":user:alice", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseRef(tc.in, tc.account, tc.kind)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidID) {
					t.Errorf("ParseRef(%q) = %v, %v; want ErrInvalidID", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseRef(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			var back ID
			if err := back.UnmarshalText([]byte(got.String())); err != nil || back != got {
				t.Errorf("text round trip of %v = %v, %v", got, back, err)
			}
		})
	}
}
