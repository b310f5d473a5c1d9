package authn

import (
	"errors"
	"fmt"
	"log/slog"
)

// ErrUnauthenticated is the one error a refused client learns about. Every
// refusal of every authenticator matches it with errors.Is, and its message is
// the message of every refusal, so that a response body built from err.Error()
// never tells a prober which check failed.
var ErrUnauthenticated = errors.New("authn: authentication failed")

// Reason names the check that refused an authentication. Reasons are stable
// strings, meant for logs, audit records and metrics labels.
type Reason string

// The reasons a refusal can carry.
const (
	// ReasonMalformed: the credential could not be parsed at all.
	ReasonMalformed Reason = "malformed"
	// ReasonMissing: no credential was presented.
	ReasonMissing Reason = "missing"
	// ReasonBadCredentials: the API key or password does not match.
	ReasonBadCredentials Reason = "bad_credentials"
	// ReasonUnknownIdentity: no such user, host or credential.
	ReasonUnknownIdentity Reason = "unknown_identity"
	// ReasonExpired: the token's exp is in the past (beyond the leeway).
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: the token's nbf or iat is in the future (beyond the leeway).
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonLifetime: the token claims a lifetime longer than allowed.
	ReasonLifetime Reason = "lifetime_too_long"
	// ReasonIssuer: the token's iss is not the configured issuer.
	ReasonIssuer Reason = "wrong_issuer"
	// ReasonAudience: the token's aud does not contain the configured audience.
	ReasonAudience Reason = "wrong_audience"
	// ReasonAlgorithm: the token's alg is not on the allow-list (none, HMAC, ...).
	ReasonAlgorithm Reason = "algorithm_not_allowed"
	// ReasonUnknownKey: no verification key has the token's kid.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonSignature: the signature does not verify.
	ReasonSignature Reason = "bad_signature"
	// ReasonMissingClaim: a claim the authenticator needs is absent or of the wrong type.
	ReasonMissingClaim Reason = "missing_claim"
	// ReasonClaimMismatch: a claim required by the host's annotations has another value.
	ReasonClaimMismatch Reason = "claim_mismatch"
	// ReasonInvalidHostID: the host id is not one of the accepted forms.
	ReasonInvalidHostID Reason = "invalid_host_id"
	// ReasonWorkloadMismatch: the workload (namespace, pod, controller, ...) is
	// not the one the host id or annotations name.
	ReasonWorkloadMismatch Reason = "workload_mismatch"
	// ReasonNotPermitted: the identity lacks authenticate on the authenticator.
	ReasonNotPermitted Reason = "not_permitted"
	// ReasonNotEnabled: no authenticator is enabled for the service id (no
	// webservice in the policy); Conjur answers 401, unlike not_permitted.
	ReasonNotEnabled Reason = "not_enabled"
	// ReasonRateLimited: too many recent failures for this identity.
	ReasonRateLimited Reason = "rate_limited"
	// ReasonUnavailable: a dependency (JWKS endpoint, Kubernetes API, key
	// store) could not be reached, so the credential could not be checked.
	ReasonUnavailable Reason = "unavailable"
)

// Refusal is the error an authenticator returns when it refuses a credential.
// Its Error method says only what ErrUnauthenticated says; Reason and Detail
// say which check failed and are meant for logs and audit. Detail never holds
// the credential itself.
type Refusal struct {
	Reason Reason
	Detail string
	// Err is the underlying cause, if any (a parse error, a fetch error).
	Err error
}

// Refuse returns a *Refusal with a formatted detail. A %w verb in format sets
// the refusal's cause.
func Refuse(reason Reason, format string, args ...any) error {
	e := fmt.Errorf(format, args...)
	return &Refusal{Reason: reason, Detail: e.Error(), Err: errors.Unwrap(e)}
}

// Error returns the generic message; see ReasonOf for the detail.
func (r *Refusal) Error() string { return ErrUnauthenticated.Error() }

// Is makes every refusal match ErrUnauthenticated.
func (r *Refusal) Is(target error) bool { return target == ErrUnauthenticated }

// Unwrap returns the underlying cause.
func (r *Refusal) Unwrap() error { return r.Err }

// String is the detailed form, for logs: "reason: detail".
func (r *Refusal) String() string {
	if r.Detail == "" {
		return string(r.Reason)
	}
	return string(r.Reason) + ": " + r.Detail
}

// LogValue lets slog record the reason and detail rather than the generic message.
func (r *Refusal) LogValue() slog.Value {
	return slog.GroupValue(slog.String("reason", string(r.Reason)), slog.String("detail", r.Detail))
}

// ReasonOf returns the reason and detail of the first Refusal in err's chain,
// or ("", "") when err is not a refusal.
func ReasonOf(err error) (Reason, string) {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason, r.Detail
	}
	return "", ""
}

// IsReason reports whether err is a refusal for the given reason.
func IsReason(err error, reason Reason) bool {
	got, _ := ReasonOf(err)
	return got == reason && reason != ""
}
