package token

import (
	"strings"

	"github.com/sowerproject/sower/authn"
)

// MetadataKey is the gRPC metadata key that carries the token, in the same
// form as the HTTP Authorization header.
const MetadataKey = "authorization"

const headerHint = `send "Authorization: Token token=\"<base64 access token>\""`

// ParseAuthorization reads the access token from an HTTP Authorization header
// value in Conjur's form, Token token="<base64 of the JSON token>", and
// returns the token's JSON. The scheme is case-insensitive; the quotes may be
// left out. Errors are refusals (missing, malformed) whose detail says what
// was wrong.
func ParseAuthorization(h string) ([]byte, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return nil, authn.Refuse(authn.ReasonMissing, "no Authorization header; %s", headerHint)
	}
	if len(h) > 2*MaxTokenSize {
		return nil, authn.Refuse(authn.ReasonMalformed, "Authorization header is %d bytes, too long for an access token", len(h))
	}
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Token") {
		return nil, authn.Refuse(authn.ReasonMalformed, "Authorization scheme is %q, not Token; %s", truncate(scheme), headerHint)
	}
	rest = strings.TrimSpace(rest)
	name, value, ok := strings.Cut(rest, "=")
	if !ok || strings.TrimSpace(name) != "token" {
		return nil, authn.Refuse(authn.ReasonMalformed, "Authorization header lacks token=; %s", headerHint)
	}
	value = strings.TrimSpace(value)
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		value = value[1 : len(value)-1]
	} else if strings.ContainsRune(value, '"') {
		return nil, authn.Refuse(authn.ReasonMalformed, "Authorization token value has unbalanced quotes; %s", headerHint)
	}
	if value == "" {
		return nil, authn.Refuse(authn.ReasonMissing, "Authorization token value is empty; %s", headerHint)
	}
	if strings.ContainsAny(value, "\r\n") { // base64 decoding would skip them
		return nil, authn.Refuse(authn.ReasonMalformed, "Authorization token value contains a line break")
	}
	raw, err := decodeSegment(value)
	if err != nil {
		return nil, authn.Refuse(authn.ReasonMalformed, "Authorization token is not base64: %w", err)
	}
	if len(raw) == 0 {
		return nil, authn.Refuse(authn.ReasonMissing, "Authorization token value is empty; %s", headerHint)
	}
	return raw, nil
}

// FromMetadata reads the access token from gRPC metadata (a metadata.MD): one
// "authorization" value in the form ParseAuthorization reads.
func FromMetadata(md map[string][]string) ([]byte, error) {
	vals := md[MetadataKey]
	switch len(vals) {
	case 0:
		return nil, authn.Refuse(authn.ReasonMissing, "no %q metadata; %s", MetadataKey, headerHint)
	case 1:
		return ParseAuthorization(vals[0])
	default:
		return nil, authn.Refuse(authn.ReasonMalformed, "%d %q metadata values, want one", len(vals), MetadataKey)
	}
}
