package etcdstore

import "testing"

type fakeView struct {
	rev   int64
	guard []byte
}

func (v fakeView) Revision() int64 { return v.rev }
func (v fakeView) Get(string) []byte {
	return v.guard
}

func TestRebaseGuardNamesTheCopysRevision(t *testing.T) {
	t.Parallel()
	claim := guard{Intent: "load-1", Base: 900, Claimed: 905}.encode()
	abort := guard{Intent: "load-1", Base: 900, Aborting: true, Claimed: 905}.encode()
	for name, tc := range map[string]struct {
		key, value string
		view       fakeView
		wantBase   int64
		unchanged  bool
	}{
		"a claim takes the copy's revision":      {guardKey, claim, fakeView{rev: 41}, 41, false},
		"its abort keeps the base the claim got": {guardKey, abort, fakeView{rev: 77, guard: []byte(guard{Intent: "load-1", Base: 41}.encode())}, 41, false},
		"another load's claim is a new base":     {guardKey, claim, fakeView{rev: 50, guard: []byte(guard{Intent: "load-0", Base: 3}.encode())}, 50, false},
		"a cleared guard passes unchanged":       {guardKey, guard{}.encode(), fakeView{rev: 9}, 0, true},
		"any other key passes unchanged":         {"/sower/policy/facts/x", claim, fakeView{rev: 9}, 0, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := RebaseGuard(tc.key, []byte(tc.value), tc.view)
			if tc.unchanged {
				if string(out) != tc.value {
					t.Fatalf("changed to %s", out)
				}
				return
			}
			g, err := decodeGuard(out)
			if err != nil {
				t.Fatal(err)
			}
			if g.Base != tc.wantBase || g.Intent != "load-1" || g.Claimed != 0 {
				t.Fatalf("guard %+v, want base %d of load-1 and no source revision", g, tc.wantBase)
			}
		})
	}
}
