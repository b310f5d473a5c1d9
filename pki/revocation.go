package pki

import (
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
)

// RevocationProvider answers whether a serial number is revoked. Every TLS
// config of this package asks it during each handshake, so it must answer
// from memory: the server keeps a RevokedSet current from etcd with a watch
// and passes that set.
type RevocationProvider interface {
	IsRevoked(serial *big.Int) bool
}

// RevokedSet is a set of revoked serial numbers, safe for concurrent use. It
// is the in-memory side of revocation: a watcher applies Add and Remove as
// entries appear and expire in etcd, and Replace after a resync.
type RevokedSet struct {
	mu sync.RWMutex
	m  map[string]struct{}
}

// NewRevokedSet returns a set holding serials.
func NewRevokedSet(serials ...*big.Int) *RevokedSet {
	s := &RevokedSet{m: map[string]struct{}{}}
	s.Add(serials...)
	return s
}

// IsRevoked implements RevocationProvider.
func (s *RevokedSet) IsRevoked(serial *big.Int) bool {
	if serial == nil {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[string(serial.Bytes())]
	return ok
}

// Add marks serials revoked.
func (s *RevokedSet) Add(serials ...*big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]struct{}{}
	}
	for _, n := range serials {
		if n != nil {
			s.m[string(n.Bytes())] = struct{}{}
		}
	}
}

// Remove forgets serials (once their certificates have expired).
func (s *RevokedSet) Remove(serials ...*big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range serials {
		if n != nil {
			delete(s.m, string(n.Bytes()))
		}
	}
}

// Replace makes the set exactly serials.
func (s *RevokedSet) Replace(serials []*big.Int) {
	m := make(map[string]struct{}, len(serials))
	for _, n := range serials {
		if n != nil {
			m[string(n.Bytes())] = struct{}{}
		}
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

// Len is the number of revoked serials.
func (s *RevokedSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Serials lists the revoked serials in ascending order.
func (s *RevokedSet) Serials() []*big.Int {
	s.mu.RLock()
	out := make([]*big.Int, 0, len(s.m))
	for k := range s.m {
		out = append(out, new(big.Int).SetBytes([]byte(k)))
	}
	s.mu.RUnlock()
	slices.SortFunc(out, (*big.Int).Cmp)
	return out
}

// FormatSerial renders a serial number as sower prints it: lower-case hex
// bytes separated by colons, as `openssl x509 -text` shows it. At least two
// bytes are printed, so the colon always marks the form as hex (a bare "11"
// would read back as decimal).
func FormatSerial(n *big.Int) string {
	b := n.Bytes()
	if len(b) < 2 {
		b = append(make([]byte, 2-len(b)), b...)
	}
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", c)
	}
	return sb.String()
}

// ParseSerial accepts a serial number as FormatSerial prints it (hex with
// colons), as hex with a 0x prefix, or as a decimal number (as step and Go
// print it). A string of hex digits without colons or prefix is read as
// decimal if it can be, so prefer the colon form.
func ParseSerial(s string) (*big.Int, error) {
	s = strings.TrimSpace(s)
	var (
		n  = new(big.Int)
		ok bool
	)
	switch {
	case s == "":
	case strings.Contains(s, ":"):
		hex := strings.ReplaceAll(s, ":", "")
		ok = !strings.Contains(s, "::") && !strings.HasPrefix(s, ":") && !strings.HasSuffix(s, ":")
		if ok {
			_, ok = n.SetString(hex, 16)
		}
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		_, ok = n.SetString(s[2:], 16)
	default:
		if _, ok = n.SetString(s, 10); !ok {
			_, ok = n.SetString(s, 16)
		}
	}
	if !ok || n.Sign() < 0 || n.BitLen() > 160 {
		return nil, fmt.Errorf("pki: %q is not a certificate serial number (use hex with colons as sower prints it, e.g. 3a:f1:07, or 0x-prefixed hex, or decimal)", s)
	}
	return n, nil
}
