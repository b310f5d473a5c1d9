// Package authn holds what every sower authenticator shares: the refusal
// error that callers see as one generic failure while logs and audit see which
// check failed, the Sealer through which secrets reach etcd under the data key,
// the limiter that slows down repeated failed logins (per identity at an
// address, per address, node-wide), and the client-address rules (trusted
// proxies, restricted_to) shared by every authenticator.
//
// The authenticators themselves live in sub-packages:
//
//   - authn/apikey: API keys (and passwords) stored only as hashes; generation,
//     constant-time verification, rotation.
//   - authn/token: Conjur-format access tokens signed by the cluster key ring;
//     issuing, verifying, key rotation, and reading the token from an HTTP
//     Authorization header or gRPC metadata.
//   - authn/jwt: the JWT authenticator (authn-jwt): signature by JWKS or static
//     public keys, issuer, audience, time and algorithm checks, and the host
//     named by token-app-property / identity-path.
//   - authn/k8s: Kubernetes service-account tokens mapped to Conjur hosts in
//     the six host-id forms and the annotation form, with the pod's owner chain
//     read from the Kubernetes API by name (a small JSON client, no client-go).
//
// All of them are pure engines: storage is behind small interfaces that the
// sub-packages declare and the server implements on etcd.
//
// A server turns errors into responses like this:
//
//	claims, err := tokens.Verify(ctx, raw)
//	if errors.Is(err, authn.ErrUnauthenticated) {
//		reason, detail := authn.ReasonOf(err) // for the log and the audit record
//		logger.Info("authentication refused", "reason", reason, "detail", detail)
//		return status.Error(codes.Unauthenticated, authn.ErrUnauthenticated.Error())
//	}
package authn
