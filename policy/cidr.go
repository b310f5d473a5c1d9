package policy

import (
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
		if bits, ok = prefixBits(bitsText, addr.BitLen()); !ok {
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

// prefixBits reads a prefix length, or a netmask ("255.255.0.0") as Ruby's
// IPAddr accepts it.
func prefixBits(s string, max int) (int, bool) {
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
