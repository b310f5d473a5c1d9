package seed

import (
	"fmt"
	"net"
	"path"
	"strings"
)

// HostnamesAnnotation names the policy annotation that lists the host names
// a Follower seed may carry: comma- or space-separated patterns where `*`
// stands for one or more DNS labels' worth of characters within a label
// (path.Match syntax, so `*.conjur-followers.svc.cluster.local` matches
// `follower-0.conjur-followers.svc.cluster.local` but not a deeper name).
const HostnamesAnnotation = "sower/follower-hostnames"

func parsePatterns(v string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		out = append(out, strings.ToLower(f))
	}
	return out
}

// matchAny reports whether name matches one of patterns, with a `*` never
// crossing a dot.
func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if strings.Count(p, ".") != strings.Count(name, ".") {
			continue
		}
		if ok, err := path.Match(strings.ReplaceAll(p, ".", "/"), strings.ReplaceAll(name, ".", "/")); err == nil && ok {
			return true
		}
	}
	return false
}

// checkHostnames applies the constraints in order and names the rule a
// refused name breaks.
func checkHostnames(names []string, webservice, caller []string, reserved map[string]bool, webserviceID, callerID string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: ask for at least one host name (follower_hostnames)", ErrInvalidRequest)
	}
	if len(names) > 32 {
		return fmt.Errorf("%w: %d host names; at most 32 per seed", ErrInvalidRequest, len(names))
	}
	if len(webservice) == 0 {
		return fmt.Errorf("%w: policy sets no host name constraint; annotate %s with %s (for example \"*.conjur-followers.svc.cluster.local\")", ErrHostname, webserviceID, HostnamesAnnotation)
	}
	seen := map[string]bool{}
	for _, n := range names {
		name := strings.ToLower(strings.TrimSuffix(n, "."))
		if seen[name] {
			return fmt.Errorf("%w: %q is asked for twice", ErrInvalidRequest, n)
		}
		seen[name] = true
		if net.ParseIP(name) != nil || !validDNSName(name) {
			return fmt.Errorf("%w: %q is not a DNS name; Follower certificates carry DNS names only", ErrHostname, n)
		}
		if reserved[name] {
			return fmt.Errorf("%w: %q is the name of a Leader or Standby of this cluster", ErrHostname, n)
		}
		if !matchAny(webservice, name) {
			return fmt.Errorf("%w: %q matches none of the patterns in %s on %s (%s)", ErrHostname, n, HostnamesAnnotation, webserviceID, strings.Join(webservice, ", "))
		}
		if len(caller) > 0 && !matchAny(caller, name) {
			return fmt.Errorf("%w: %q matches none of the patterns in %s on %s (%s)", ErrHostname, n, HostnamesAnnotation, callerID, strings.Join(caller, ", "))
		}
	}
	return nil
}

func validDNSName(n string) bool {
	if len(n) == 0 || len(n) > 253 {
		return false
	}
	for _, l := range strings.Split(n, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
