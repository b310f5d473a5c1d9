package pki

import "time"

// Clock is the time source of the CA (issuance, validity), of the TLS
// verifiers (expiry checks) and of the Renewer (when to renew). Tests inject
// pkitest.Clock to move time without sleeping.
type Clock interface {
	Now() time.Time
	// After behaves as time.After.
	After(d time.Duration) <-chan time.Time
}

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
