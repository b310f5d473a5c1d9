package token

import (
	"crypto/sha256"
	"sync"
)

// verifiedCacheSize bounds the cache of verified tokens. A client keeps its
// token for its whole lifetime (eight minutes) and sends it with every call,
// so a node sees the same few thousand tokens over and over.
const verifiedCacheSize = 4096

// verifiedCache remembers tokens whose signature verified, keyed by the
// SHA-256 of the token's exact bytes: the same bytes carry the same
// signature over the same claims, so verifying them again would only spend
// the CPU (an EdDSA verification is about 50 µs; a lookup is about 1 µs).
// An entry is tied to the key ring it verified against: when the ring
// changes (a key rotated in or pruned out), every entry is verified again.
// The time checks (exp, iat) run on every use, cached or not.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedEntry
}

type verifiedEntry struct {
	claims Claims
	ring   *ring
}

func (c *verifiedCache) get(sum [sha256.Size]byte, r *ring) (Claims, bool) {
	c.mu.Lock()
	e, ok := c.m[sum]
	c.mu.Unlock()
	if !ok || e.ring != r {
		return Claims{}, false
	}
	return e.claims, true
}

func (c *verifiedCache) put(sum [sha256.Size]byte, r *ring, claims Claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]verifiedEntry)
	}
	if len(c.m) >= verifiedCacheSize {
		// Evict one entry, in the map's random iteration order.
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[sum] = verifiedEntry{claims: claims, ring: r}
}
