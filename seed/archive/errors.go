package archive

import "errors"

// Every refusal wraps one of these, so a caller can tell with errors.Is what
// was wrong; the wrapping adds which entry, file or field. The texts say what
// to do next, because the fetcher and `sower seed unpack` print them as they
// are.
var (
	// Caller mistakes, found before any byte is read or written.
	ErrNoPin         = errors.New("seed/archive: a CA pin is required to verify a seed (run `sower ca pin` on the Leader to get it)")
	ErrNoIdentity    = errors.New("seed/archive: an age identity is required to open a sealed seed")
	ErrNoRecipient   = errors.New("seed/archive: an age recipient is required to seal a seed")
	ErrBadRecipient  = errors.New("seed/archive: the recipient is not an age X25519 public key (it starts with \"age1\"; make one with age-keygen or age.GenerateX25519Identity)")
	ErrNoSigner      = errors.New("seed/archive: a signing key and its certificate chain are required")
	ErrSignerKey     = errors.New("seed/archive: the signing key does not fit its certificate (use the key the first certificate of the chain was issued for, ECDSA P-256/P-384/P-521, Ed25519 or RSA of at least 2048 bits)")
	ErrInvalidSeed   = errors.New("seed/archive: invalid seed contents")
	ErrTargetNotSeed = errors.New("seed/archive: the target exists and does not hold a seed (unpack into a new or empty directory)")

	// Sealing.
	ErrNotSealed     = errors.New("seed/archive: the input is not a sealed seed (no age header; if the server was configured to send plain seeds, open it as a plain archive)")
	ErrWrongIdentity = errors.New("seed/archive: the seed was not sealed to this age identity (request a seed for this identity's recipient)")
	ErrCorrupt       = errors.New("seed/archive: the sealed seed is damaged: cut short, corrupted or modified in transit (fetch the seed again)")

	// Layout and size.
	ErrTruncated     = errors.New("seed/archive: the archive ends early (the download was cut short; fetch the seed again)")
	ErrMalformed     = errors.New("seed/archive: the input is not a seed archive")
	ErrTooLarge      = errors.New("seed/archive: the archive is larger than the configured limit")
	ErrUnsupported   = errors.New("seed/archive: unsupported seed format version (upgrade sower on this node)")
	ErrAbsolutePath  = errors.New("seed/archive: absolute path")
	ErrPathTraversal = errors.New("seed/archive: path escapes the target directory")
	ErrInvalidPath   = errors.New("seed/archive: invalid path")
	ErrLink          = errors.New("seed/archive: links are not allowed in a seed")
	ErrDevice        = errors.New("seed/archive: device files are not allowed in a seed")
	ErrFIFO          = errors.New("seed/archive: FIFOs are not allowed in a seed")
	ErrEntryType     = errors.New("seed/archive: only regular files are allowed in a seed")
	ErrDuplicate     = errors.New("seed/archive: duplicate entry")
	ErrUnlisted      = errors.New("seed/archive: entry is not listed in the signed manifest")
	ErrMissing       = errors.New("seed/archive: a file listed in the manifest is missing from the archive")

	// Trust.
	ErrBadSignature = errors.New("seed/archive: the manifest signature is invalid (the seed was modified or not signed by this cluster)")
	ErrUntrusted    = errors.New("seed/archive: the seed signer's certificate does not chain to the pinned CA")
	ErrPinMismatch  = errors.New("seed/archive: the seed is not signed by the CA the pin names (check the pin against `sower ca pin` on the Leader)")
	ErrHashMismatch = errors.New("seed/archive: file contents do not match the signed manifest (the seed was modified; request a new one)")
	ErrExpired      = errors.New("seed/archive: the seed has expired (request a new seed)")
	ErrNotYetValid  = errors.New("seed/archive: the seed is not valid yet (check this node's clock)")
)
