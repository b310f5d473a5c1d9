package jwt

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sowerproject/sower/authn"
)

// pathStep is one step of a claim path: a key, then optional array indexes.
type pathStep struct {
	key     string
	indexes []int
}

// parseClaimPath reads Conjur's claim paths: keys separated by "/", each
// optionally followed by array indexes, as in "kubernetes.io/namespace" or
// "groups[0]".
func parseClaimPath(p string) ([]pathStep, error) {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return nil, fmt.Errorf("claim path %q is empty or starts or ends with /", p)
	}
	var steps []pathStep
	for _, part := range strings.Split(p, "/") {
		key, rest, _ := strings.Cut(part, "[")
		if key == "" {
			return nil, fmt.Errorf("claim path %q has an empty key", p)
		}
		st := pathStep{key: key}
		if rest != "" {
			rest = "[" + rest
			for rest != "" {
				if rest[0] != '[' {
					return nil, fmt.Errorf("claim path %q: bad index syntax", p)
				}
				end := strings.IndexByte(rest, ']')
				if end < 0 {
					return nil, fmt.Errorf("claim path %q: unclosed [", p)
				}
				i, err := strconv.Atoi(rest[1:end])
				if err != nil || i < 0 {
					return nil, fmt.Errorf("claim path %q: index %q is not a number", p, rest[1:end])
				}
				st.indexes = append(st.indexes, i)
				rest = rest[end+1:]
			}
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// Lookup returns the claim at a Conjur claim path ("kubernetes.io/pod/name",
// "groups[0]").
func (c *Claims) Lookup(path string) (any, bool) {
	steps, err := parseClaimPath(path)
	if err != nil {
		return nil, false
	}
	var cur any = c.Raw
	for _, st := range steps {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[st.key]; !ok {
			return nil, false
		}
		for _, i := range st.indexes {
			arr, ok := cur.([]any)
			if !ok || i >= len(arr) {
				return nil, false
			}
			cur = arr[i]
		}
	}
	return cur, true
}

// String returns the claim at path when it is a non-empty string.
func (c *Claims) String(path string) (string, bool) {
	v, ok := c.Lookup(path)
	s, isString := v.(string)
	return s, ok && isString && s != ""
}

// Identity names the host a verified token authenticates, as Conjur does:
// with token-app-property set, "host/" + identity-path + "/" + the claim's
// value, and the URL must not name a host; otherwise the host named in the
// URL (with or without its "host/" prefix). The result is a role login,
// "host/...".
func (a *Authenticator) Identity(c *Claims, urlHost string) (string, error) {
	prop := a.settings.TokenAppProperty
	urlHost = strings.TrimPrefix(urlHost, "host/")
	if prop == "" {
		if urlHost == "" {
			return "", authn.Refuse(authn.ReasonInvalidHostID, "no host in the URL and no token-app-property to take it from")
		}
		return "host/" + urlHost, nil
	}
	if urlHost != "" {
		return "", authn.Refuse(authn.ReasonInvalidHostID, "the URL names host %q but token-app-property is set; leave the host out of the URL", truncate(urlHost))
	}
	v, ok := c.String(prop)
	if !ok {
		return "", authn.Refuse(authn.ReasonMissingClaim, "JWT has no string claim %q (token-app-property)", prop)
	}
	if strings.Contains(v, "..") || strings.HasPrefix(v, "/") {
		return "", authn.Refuse(authn.ReasonInvalidHostID, "claim %q value %q is not a host id", prop, truncate(v))
	}
	if p := strings.Trim(a.settings.IdentityPath, "/"); p != "" {
		return "host/" + p + "/" + v, nil
	}
	return "host/" + v, nil
}

// AnnotationPrefix returns the prefix of the host annotations that restrict
// claims for an authn-jwt service: "authn-jwt/<service-id>/".
func AnnotationPrefix(serviceID string) string { return "authn-jwt/" + serviceID + "/" }

// MatchAnnotations enforces a host's authn-jwt annotations: every annotation
// "authn-jwt/<service-id>/<claim path>: <value>" requires the token's claim
// at that path to be that string. Other annotations are ignored.
func MatchAnnotations(serviceID string, annotations map[string]string, c *Claims) error {
	prefix := AnnotationPrefix(serviceID)
	for name, want := range annotations {
		path, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		got, ok := c.Lookup(path)
		if !ok {
			return authn.Refuse(authn.ReasonMissingClaim, "JWT has no claim %q required by annotation %q", path, name)
		}
		if s, isString := got.(string); !isString || s != want {
			return authn.Refuse(authn.ReasonClaimMismatch, "JWT claim %q does not match annotation %q", path, name)
		}
	}
	return nil
}
