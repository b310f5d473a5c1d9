// Package apikey issues, stores and checks the API keys (and passwords) that
// Conjur users and hosts log in with.
//
// An API key is 256 random bits written the way Conjur writes them: eight
// big-endian 32-bit words, each in lower-case Crockford base32, concatenated
// (56 characters; sower pads each word to 7 characters so that the text maps
// back to exactly one key). Only a keyed hash of the key is stored:
// HMAC-SHA256 under a cluster-wide secret, the pepper, bound to the role id. A
// high-entropy key needs no slow hash, and the HMAC keeps logins in the
// microseconds; a stolen credential record is useless without the pepper,
// which is kept sealed under the data key (SealPepper, OpenPepper).
//
// Passwords, which are low-entropy, are peppered and bcrypt-hashed.
//
// Use:
//
//	pepper, _ := apikey.OpenPepper(sealer, sealedPepperFromEtcd)
//	keys, _ := apikey.New(apikey.Config{Store: store, Pepper: pepper})
//	key, _ := keys.Rotate(ctx, "myorg:host:app")   // give key to the host, once
//	err := keys.Verify(ctx, "myorg:host:app", key)  // nil, or an authn refusal
//
// Verification fails with an error matching authn.ErrUnauthenticated whose
// authn.ReasonOf says why (unknown_identity, bad_credentials). Store failures
// are returned as they are, so that a server answers them with 5xx, not 401.
package apikey
