// Package jwt is the JWT authenticator (Conjur's authn-jwt): it verifies a
// JSON Web Token from an external issuer (a Kubernetes API server, a CI
// system) and names the Conjur host it authenticates.
//
// Settings come from the variables Conjur keeps under
// conjur/authn-jwt/<service-id> (the server reads them and fills Settings):
// jwks-uri or public-keys (one of them), ca-cert (with jwks-uri), issuer,
// audience, token-app-property and identity-path.
//
// Verify checks, in order: the token's shape and size; its alg against an
// allow-list of asymmetric algorithms (RS*, PS*, ES*, EdDSA; never none or
// HMAC, whatever the settings say); the signature with the key named by kid,
// from the static public-keys or from the JWKS fetched over HTTPS (cached,
// fetched again when a kid is unknown, at most once per refresh interval, and
// when the cache is older than its TTL); iss and aud when configured; exp
// (required), nbf and iat with a small leeway. Each refusal matches
// authn.ErrUnauthenticated and carries an authn.Reason.
//
// Identity then names the host: "host/<identity-path>/<token-app-property
// value>" when token-app-property is set (nested claims are written
// "kubernetes.io/namespace", array items "groups[0]"), otherwise the host the
// client named in the URL.
//
// Use:
//
//	a, err := jwt.New(settings, jwt.WithLeeway(30*time.Second))
//	defer a.Close()
//	claims, err := a.Verify(ctx, rawJWT)
//	host, err := a.Identity(claims, hostFromURL)
//	err = jwt.MatchAnnotations(serviceID, hostAnnotations, claims)
package jwt
