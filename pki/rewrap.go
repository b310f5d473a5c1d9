package pki

import (
	"context"
	"errors"
	"fmt"
)

// RewrapResult counts what one Rewrap pass did.
type RewrapResult struct {
	Rewrapped int // re-sealed under the primary version
	Current   int // already under the primary version
	Missing   int // no value at the key (deleted since it was listed)
}

const rewrapAttempts = 5

// Rewrap re-seals the values at keys under the keyring's primary version,
// through the store, while the cluster keeps serving: every version stays in
// the keyring until the pass is done, so readers open old and new values
// alike. If the store implements Swapper, a value written between Rewrap's
// read and its write is re-read instead of overwritten; otherwise Put is used
// and the caller must keep other writers of these keys quiet.
//
// A pass is idempotent: after an error, run it again. When a pass returns
// Rewrapped+Current == len(keys)-Missing with no error, older versions can be
// retired (on every node).
func Rewrap(ctx context.Context, s Store, k *Keyring, keys []string) (RewrapResult, error) {
	var res RewrapResult
	if s == nil || k == nil {
		return res, errors.New("pki: Rewrap needs a Store and a Keyring")
	}
	swapper, canSwap := s.(Swapper)
	primary := k.Primary()
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("pki: rewrap interrupted: %w", err)
		}
		done := false
		for attempt := 0; attempt < rewrapAttempts && !done; attempt++ {
			old, err := s.Get(ctx, key)
			if errors.Is(err, ErrNotFound) {
				res.Missing++
				done = true
				break
			}
			if err != nil {
				return res, fmt.Errorf("pki: rewrap %q: %w", key, err)
			}
			version, err := SealedKeyVersion(old)
			if err != nil {
				return res, fmt.Errorf("pki: rewrap %q: %w", key, err)
			}
			if version == primary {
				res.Current++
				done = true
				break
			}
			plain, err := k.Open(key, old)
			if err != nil {
				return res, fmt.Errorf("pki: rewrap: %w", err)
			}
			next, err := k.Seal(key, plain)
			clear(plain)
			if err != nil {
				return res, fmt.Errorf("pki: rewrap %q: %w", key, err)
			}
			if !canSwap {
				if err := s.Put(ctx, key, next); err != nil {
					return res, fmt.Errorf("pki: rewrap %q: %w", key, err)
				}
				res.Rewrapped++
				done = true
				break
			}
			ok, err := swapper.CompareAndSwap(ctx, key, old, next)
			if err != nil {
				return res, fmt.Errorf("pki: rewrap %q: %w", key, err)
			}
			if ok {
				res.Rewrapped++
				done = true
			}
		}
		if !done {
			return res, fmt.Errorf("pki: rewrap %q: the value kept changing during %d attempts; run the rewrap again", key, rewrapAttempts)
		}
	}
	return res, nil
}
