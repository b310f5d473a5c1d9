// Package pkitest provides test doubles for code that uses package pki: a
// manual Clock that moves only when told (no sleeps in tests) and an
// in-memory Store with fault injection. They are real implementations of the
// pki interfaces, small enough to trust, and are used by pki's own tests.
//
//	clock := pkitest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
//	store := pkitest.NewMemStore()
//	ca, err := pki.Bootstrap(ctx, pki.Config{Store: store, Sealer: keyring}, pki.WithClock(clock))
//	...
//	clock.Advance(48 * time.Hour) // a Renewer waiting on the clock wakes up
package pkitest
