package authn_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/sowerproject/sower/authn"
)

// The limiter wraps any check; here three failures lock "alice" out while
// "bob" is unaffected.
func ExampleLimiter() {
	l := authn.NewLimiter(authn.LimiterConfig{Burst: 3, Refill: time.Minute})
	check := func(id string, ok bool) error {
		if wait, allowed := l.Allow(id); !allowed {
			return authn.Refuse(authn.ReasonRateLimited, "%s: retry in about %s", id, wait.Round(time.Minute))
		}
		if !ok {
			l.Fail(id)
			return authn.Refuse(authn.ReasonBadCredentials, "%s: wrong API key", id)
		}
		l.Succeed(id)
		return nil
	}
	for range 3 {
		_ = check("alice", false)
	}
	err := check("alice", true)
	reason, detail := authn.ReasonOf(err)
	fmt.Println(errors.Is(err, authn.ErrUnauthenticated), reason, detail)
	fmt.Println(check("bob", true))
	// Output:
	// true rate_limited alice: retry in about 1m0s
	// <nil>
}
