package replica

import "strings"

// Rule is one entry of the allow-list: a key prefix, or one exact key.
type Rule struct {
	Key    string
	Prefix bool
	// Why says what the Follower needs it for.
	Why string
}

// Replicated is what a Follower receives (see docs/architecture.md for the
// key layout). Everything else under /sower/ stays on the quorum: seed
// records (/sower/seeds/), enrollment tokens (/sower/enroll/), the CA record
// and its keys (/sower/pki/ca), data-key acknowledgements, the election and
// the quorum's own records (/sower/cluster/ other than nodes), and the
// audit trail (/sower/audit/).
var Replicated = []Rule{
	{Key: "/sower/meta/cluster", Why: "the cluster's id and account"},
	{Key: "/sower/policy/", Prefix: true, Why: "roles, resources, permissions, annotations, policy versions"},
	{Key: "/sower/secrets/", Prefix: true, Why: "secret values, sealed under the data key; authenticator settings are variables"},
	{Key: "/sower/authn/credentials/", Prefix: true, Why: "API-key hashes (peppered HMACs, never keys)"},
	{Key: "/sower/authn/signing-keys/", Prefix: true, Why: "access-token signing keys, sealed: tokens are valid on every node"},
	{Key: "/sower/authn/pepper", Why: "the API-key hashing pepper, sealed"},
	{Key: "/sower/authn/authenticators/", Prefix: true, Why: "authenticators switched off (conjur authenticator disable): refused on every node"},
	{Key: "/sower/pki/revoked/", Prefix: true, Why: "revoked certificates"},
	{Key: "/sower/pki/data-keyring", Why: "a data-key rotation: the next keyring, sealed under the current one"},
	{Key: "/sower/cluster/nodes/", Prefix: true, Why: "every quorum node's endpoints, to fail over to"},
}

// Allowed reports whether key is replicated.
func Allowed(key string) bool {
	for _, r := range Replicated {
		if r.Prefix && strings.HasPrefix(key, r.Key) || !r.Prefix && key == r.Key {
			return true
		}
	}
	return false
}
