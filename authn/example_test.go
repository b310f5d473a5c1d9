package authn_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/sowerproject/sower/authn"
)

// The limiter wraps any check; here three failures lock "alice" out at the
// address they came from, while "alice" from her own address and "bob" are
// unaffected.
func ExampleLimiter() {
	l := authn.NewLimiter(authn.LimiterConfig{Burst: 3, Refill: time.Minute})
	check := func(id, addr string, ok bool) error {
		if wait, allowed := l.Allow(id, addr); !allowed {
			return authn.Refuse(authn.ReasonRateLimited, "%s: retry in about %s", id, wait.Round(time.Minute))
		}
		if !ok {
			l.Fail(id, addr)
			return authn.Refuse(authn.ReasonBadCredentials, "%s: wrong API key", id)
		}
		l.Succeed(id, addr)
		return nil
	}
	for range 3 {
		_ = check("alice", "10.9.9.9", false)
	}
	err := check("alice", "10.9.9.9", true)
	reason, detail := authn.ReasonOf(err)
	fmt.Println(errors.Is(err, authn.ErrUnauthenticated), reason, detail)
	fmt.Println(check("alice", "10.1.2.3", true))
	fmt.Println(check("bob", "10.1.2.3", true))
	// Output:
	// true rate_limited alice: retry in about 1m0s
	// <nil>
	// <nil>
}
