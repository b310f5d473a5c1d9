// Package archive is the seed format: how a seed's files are packed,
// signed, sealed, verified and unpacked. docs/seed-format.md is the
// specification; this package is its reference implementation.
//
// A seed is a tar holding a manifest (metadata and every file's path, mode,
// size and SHA-256), a detached signature over the exact manifest bytes with
// the signer's certificate chain, and the files. By default the tar is
// sealed: encrypted with age to an X25519 recipient the requester sent, so
// it never crosses the network or touches a disk in the clear.
//
// The seed service signs and seals:
//
//	b, err := archive.NewBuilder(archive.Signer{Key: key, Chain: chain})
//	m, err := b.Seal(w, recipient, md, files)
//
// A node holds only the CA pin and its age identity:
//
//	m, err := archive.Unpack(r, dir, pin, identity)
//
// Unpack checks everything (signature chain to the pinned CA, signature,
// expiry, every hash, every entry's type and name, size limits) before it
// writes anything, then writes the files atomically. Open and OpenPlain do
// the checks alone and return a *Seed, for a caller that wants to look at
// the manifest before writing. Every refusal wraps one of the Err values.
//
// The package has no state and starts no goroutines; a Builder may be shared.
package archive
