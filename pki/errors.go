package pki

import "errors"

// Sentinel errors. Callers test them with errors.Is; the wrapped messages add
// the context (which profile, which certificate, which key path) and what to
// do next.
var (
	// ErrNotFound is what a Store returns for a key that holds no value.
	ErrNotFound = errors.New("pki: not found")

	// ErrCAExists refuses to bootstrap or import over an existing CA.
	ErrCAExists = errors.New("pki: a cluster CA already exists in the store")
	// ErrNotCA refuses to import a certificate that cannot sign certificates.
	ErrNotCA = errors.New("pki: certificate is not a CA")
	// ErrKeyMismatch refuses a private key that does not belong to its certificate.
	ErrKeyMismatch = errors.New("pki: private key does not match the certificate")
	// ErrNoRootKey means an operation needs the root key but the CA was
	// imported as an intermediate, without it.
	ErrNoRootKey = errors.New("pki: the CA holds no root key")

	// ErrUnknownProfile is returned for a profile name that is not in the table.
	ErrUnknownProfile = errors.New("pki: unknown certificate profile")
	// ErrProfileViolation is returned (inside a *ProfileError) for a request
	// that its profile does not allow.
	ErrProfileViolation = errors.New("pki: request refused by its certificate profile")

	// ErrExpired: the peer's certificate (or a CA above it) is outside its
	// validity period. Renew it, or check the clocks of both machines.
	ErrExpired = errors.New("pki: certificate expired or not yet valid")
	// ErrRevoked: a certificate of the peer's chain has been revoked.
	ErrRevoked = errors.New("pki: certificate revoked")
	// ErrNameMismatch: the server's certificate has no SAN for the name dialed.
	ErrNameMismatch = errors.New("pki: certificate name mismatch (wrong SAN)")
	// ErrUnknownCA: the peer's chain does not lead to this cluster's CA.
	ErrUnknownCA = errors.New("pki: certificate signed by an unknown CA")
	// ErrWrongUsage: the certificate is not valid for this purpose (for
	// example a client certificate presented by a server).
	ErrWrongUsage = errors.New("pki: certificate not valid for this use")
	// ErrWrongProfile: the certificate was issued under a profile that this
	// endpoint does not accept.
	ErrWrongProfile = errors.New("pki: certificate profile not accepted here")
	// ErrNoCertificate: the peer presented no certificate.
	ErrNoCertificate = errors.New("pki: peer presented no certificate")
	// ErrUntrusted covers every other chain verification failure.
	ErrUntrusted = errors.New("pki: certificate not trusted")

	// ErrKeyFilePermissions refuses a data key file readable by group or others.
	ErrKeyFilePermissions = errors.New("pki: data key file is readable by group or others")
	// ErrMalformedKeyring refuses a data key file that cannot be parsed.
	ErrMalformedKeyring = errors.New("pki: malformed data key file")
	// ErrMalformedSealed is returned for bytes that are not a sealed value.
	ErrMalformedSealed = errors.New("pki: not a sealed value (truncated or wrong format)")
	// ErrUnknownKeyVersion: the value was sealed under a data key version this
	// keyring does not hold.
	ErrUnknownKeyVersion = errors.New("pki: sealed under a data key version this node does not have")
	// ErrWrongDataKey: the value was sealed under another data key that
	// carries the same version number (another cluster's key file).
	ErrWrongDataKey = errors.New("pki: sealed under a different data key")
	// ErrOpen: the key is right but authentication failed: the value was
	// sealed for another key path (AAD), or it was tampered with.
	ErrOpen = errors.New("pki: sealed value failed authentication")
)
