package authn

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sowerproject/sower/policy"
)

// ReasonOrigin: the client address is outside the role's restricted_to.
const ReasonOrigin Reason = "invalid_origin"

// Networks is a list of IP networks: a role's restricted_to, or the proxies
// a node trusts. The zero value is empty and contains nothing.
type Networks []netip.Prefix

// ErrBadNetwork is wrapped by ParseNetworks for an entry that is not an
// address or a network.
var ErrBadNetwork = errors.New("authn: not an IP address or CIDR network")

// ParseNetworks reads addresses and networks in the forms policy accepts for
// restricted_to: "10.1.2.3", "10.0.0.0/8", "10.0.0.0/255.0.0.0" and their
// IPv6 counterparts. A bare address is a network of one.
func ParseNetworks(entries []string) (Networks, error) {
	out := make(Networks, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		p, err := parseNetwork(e)
		if err != nil {
			return nil, fmt.Errorf("%w: %q (write an address such as 10.1.2.3 or a network such as 10.0.0.0/8)", ErrBadNetwork, e)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseNetwork(s string) (netip.Prefix, error) {
	addrText, bitsText, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrText)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, ErrBadNetwork
	}
	addr = addr.Unmap()
	if !hasBits {
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	bits, ok := policy.PrefixBits(bitsText, addr.BitLen())
	if !ok {
		return netip.Prefix{}, ErrBadNetwork
	}
	return addr.Prefix(bits)
}

// Contains reports whether addr is in one of the networks. An IPv4 address
// written as IPv4-mapped IPv6 (::ffff:10.1.2.3) counts as the IPv4 address.
func (n Networks) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range n {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Strings returns the networks in CIDR notation.
func (n Networks) Strings() []string {
	out := make([]string, len(n))
	for i, p := range n {
		out[i] = p.String()
	}
	return out
}

// ClientAddr returns the address of the client a request comes from: the
// connection's remote address, unless that is one of the trusted proxies.
// Only then is X-Forwarded-For believed, read from the right: each proxy
// appends the address it received the request from, so the right-most
// address that is not a trusted proxy is the first one no trusted party
// vouches for, and everything to its left may be forged by the client.
// When every hop is a trusted proxy the left-most is the client. A
// malformed entry ends the walk at the last address that was vouched for.
//
// forwardedFor holds the header's values in the order received (each may
// be a comma-separated list). With no trusted proxies (the default) the
// header is never read.
func ClientAddr(remote netip.Addr, forwardedFor []string, trusted Networks) netip.Addr {
	remote = remote.Unmap()
	if len(trusted) == 0 || !trusted.Contains(remote) {
		return remote
	}
	var hops []string
	for _, v := range forwardedFor {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return client
		}
		client = a.Unmap()
		if !trusted.Contains(client) {
			return client
		}
	}
	return client
}

// CheckOrigin refuses a client address outside restrictedTo, the networks
// a role may authenticate from (policy's restricted_to). An empty list
// restricts nothing, as in Conjur. An address that does not parse is
// outside every restriction.
func CheckOrigin(restrictedTo Networks, client string) error {
	if len(restrictedTo) == 0 {
		return nil
	}
	addr, err := netip.ParseAddr(client)
	if err != nil || !restrictedTo.Contains(addr) {
		return Refuse(ReasonOrigin, "client address %q is outside restricted_to %s", client, strings.Join(restrictedTo.Strings(), ","))
	}
	return nil
}
