package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// checkCIDR validates a restricted_to entry the way Conjur does: an IPv4 or
// IPv6 address, or a network in CIDR notation written exactly as its
// canonical form (no bits set to the right of the mask). It returns Conjur's
// message for an invalid entry, or "".
func checkCIDR(s string) string {
	invalid := fmt.Sprintf("Invalid IP address or CIDR range '%s'", s)
	addrText, bitsText, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrText)
	if err != nil || addr.Zone() != "" {
		return invalid
	}
	bits := addr.BitLen()
	if hasBits {
		var ok bool
		if bits, ok = PrefixBits(bitsText, addr.BitLen()); !ok {
			return invalid
		}
	}
	prefix, err := addr.Prefix(bits)
	if err != nil {
		return invalid
	}
	canonical := prefix.String()
	switch {
	case !hasBits && s == addr.String():
		return ""
	case s == canonical:
		return ""
	}
	return fmt.Sprintf("%s: Value has bits set to right of mask. Did you mean '%s'?", invalid, canonical)
}

// PrefixBits reads the part of a restricted_to entry after its "/": a
// prefix length, or a netmask ("255.255.0.0") as Ruby's IPAddr accepts it,
// for an address of max bits. authn reads the entries it enforces with it,
// so policy and enforcement agree on what an entry means.
func PrefixBits(s string, max int) (int, bool) {
	if mask, err := netip.ParseAddr(s); err == nil {
		if mask.BitLen() != max {
			return 0, false
		}
		b := mask.AsSlice()
		n, ended := 0, false
		for _, octet := range b {
			for i := 7; i >= 0; i-- {
				set := octet&(1<<i) != 0
				switch {
				case set && ended:
					return 0, false
				case set:
					n++
				default:
					ended = true
				}
			}
		}
		return n, true
	}
	if s == "" || len(s) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= max
}

// canonicalCIDR writes a valid restricted_to entry as Conjur stores and
// shows it (a PostgreSQL cidr): a network in CIDR notation, a single
// address as /32 or /128, a netmask as its prefix length.
func canonicalCIDR(s string) string {
	addrText, bitsText, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrText)
	if err != nil {
		return s
	}
	bits := addr.BitLen()
	if hasBits {
		var ok bool
		if bits, ok = PrefixBits(bitsText, addr.BitLen()); !ok {
			return s
		}
	}
	prefix, err := addr.Prefix(bits)
	if err != nil {
		return s
	}
	return prefix.String()
}

// unionCIDRs returns old with the entries of add it lacks appended, every
// entry in canonical form.
func unionCIDRs(old, add []string) []string {
	out := make([]string, 0, len(old)+len(add))
	seen := make(map[string]bool, len(old)+len(add))
	for _, l := range [][]string{old, add} {
		for _, c := range l {
			c = canonicalCIDR(c)
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// CanonicalCIDR checks an address or network as restricted_to entries are
// checked and returns it as Conjur shows it ("10.1.2.3" is "10.1.2.3/32").
// The error's message is Conjur's. Host factory tokens' networks use it.
func CanonicalCIDR(s string) (string, error) {
	if msg := checkCIDR(s); msg != "" {
		return "", errors.New(msg)
	}
	return canonicalCIDR(s), nil
}
