package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func voters(reachable ...bool) []Member {
	ms := make([]Member, len(reachable))
	for i, r := range reachable {
		ms[i] = Member{ID: uint64(i + 1), Name: string(rune('a' + i)), Reachable: r}
	}
	return ms
}

func TestAssess(t *testing.T) {
	tests := map[string]struct {
		ms          []Member
		leaderKnown bool
		tolerance   int
		remaining   int
		quorum      bool
		warnings    []string // substrings, in order
	}{
		"three healthy":     {voters(true, true, true), true, 1, 1, true, nil},
		"five healthy":      {voters(true, true, true, true, true), true, 2, 2, true, nil},
		"single voter":      {voters(true), true, 0, 0, true, []string{"single point of failure: one voting member"}},
		"two voters":        {voters(true, true), true, 0, 0, true, []string{"single point of failure: 2 voters", "even number of voters (2)"}},
		"four voters":       {voters(true, true, true, true), true, 1, 1, true, []string{"even number of voters (4)"}},
		"one of three down": {voters(true, false, true), true, 1, 0, true, []string{"1 voter(s) unreachable (b)"}},
		"quorum lost":       {voters(true, false, false), false, 1, -1, false, []string{"no quorum: 1 of 3", "no Leader"}},
		"learner":           {append(voters(true, true, true), Member{ID: 9, Name: "l", Learner: true, Lag: 40}), true, 1, 1, true, []string{"learner(s) not yet voting: l (lag 40)"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := Assess(tc.ms, Leader{Name: "a", MemberID: 1}, tc.leaderKnown)
			if h.FaultTolerance != tc.tolerance || h.Remaining != tc.remaining || h.HasQuorum != tc.quorum {
				t.Fatalf("health = %+v, want tolerance %d, remaining %d, quorum %v", h, tc.tolerance, tc.remaining, tc.quorum)
			}
			if len(h.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %d matching %q", h.Warnings, len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(h.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, h.Warnings[i], w)
				}
			}
		})
	}
}

func TestCheckRemove(t *testing.T) {
	learner := Member{ID: 9, Name: "l", Learner: true}
	tests := map[string]struct {
		ms   []Member
		id   uint64
		want error
	}{
		"healthy three, remove one":      {voters(true, true, true), 2, nil},
		"remove the down one":            {voters(true, false, true), 2, nil},
		"remove a healthy one, one down": {voters(true, false, true), 3, ErrWouldLoseQuorum},
		"only voter":                     {voters(true), 1, ErrWouldLoseQuorum},
		"learner never matters":          {append(voters(true, false, false), learner), 9, nil},
		"unknown":                        {voters(true, true, true), 7, ErrMemberNotFound},
		"two of two":                     {voters(true, true), 1, nil},
		"two, other down":                {voters(true, false), 1, ErrWouldLoseQuorum},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := CheckRemove(tc.ms, tc.id)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFailoverTTL(t *testing.T) {
	pid := ClusterPolicyID("acme", "prod")
	tests := map[string]struct {
		p    Policy
		want time.Duration
	}{
		"no policy":         {nil, DefaultFailoverTTL},
		"no annotation":     {fakePolicy{}, DefaultFailoverTTL},
		"annotation":        {fakePolicy{annotations: map[string]string{pid + "#ttl": "20"}}, 20 * time.Second},
		"below the minimum": {fakePolicy{annotations: map[string]string{pid + "#ttl": "1"}}, MinFailoverTTL},
		"not a number":      {fakePolicy{annotations: map[string]string{pid + "#ttl": "soon"}}, DefaultFailoverTTL},
		"other cluster":     {fakePolicy{annotations: map[string]string{ClusterPolicyID("acme", "dr") + "#ttl": "3"}}, DefaultFailoverTTL},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := FailoverTTL(tc.p, "acme", "prod", DefaultFailoverTTL); got != tc.want {
				t.Fatalf("FailoverTTL = %s, want %s", got, tc.want)
			}
		})
	}
}
