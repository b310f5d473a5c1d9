// Package token issues and verifies sower's access tokens, which are Conjur
// access tokens: a JSON-serialized JWS
//
//	{"protected":"<base64 header>","payload":"<base64 claims>","signature":"<base64url>"}
//
// whose header is {"alg":"EdDSA"|"ES256","kid":"<key id>","typ":"JWT"} and
// whose payload is {"sub":"<login>","iat":<unix>,"exp":<unix>}. The protected
// header and payload are in standard, padded base64 because Conjur clients
// (conjur-api-go's authn.NewToken) decode the payload with the standard
// alphabet and would fail on a base64url payload; Slosilo's own parser accepts
// either. Verification decodes either alphabet, with or without padding; the
// signature is always over the text as transmitted.
//
// Tokens are signed by the cluster key ring: every key is kept in etcd sealed
// under the data key (through authn.Sealer), so every node that holds the data
// key can issue and verify tokens. Rotate adds a key and signs with it from
// then on; older keys keep verifying the tokens they signed until Prune
// removes them, after no such token can still be valid. A node that meets a
// token signed by a key it has not loaded yet (another node rotated) reloads
// the ring, at most once per reload interval.
//
// Use:
//
//	tokens, _ := token.New(token.Config{Keys: store, Sealer: sealer})
//	_ = tokens.EnsureKey(ctx)               // Leader, at start; others call Load
//	tok, _ := tokens.Issue("host/app")      // tok.JSON is the body, tok.Base64() for Accept-Encoding: base64
//
//	raw, err := token.ParseAuthorization(r.Header.Get("Authorization"))
//	claims, err := tokens.Verify(ctx, raw)  // claims.Subject is the login
//
// Refusals match authn.ErrUnauthenticated and carry an authn.Reason.
package token
