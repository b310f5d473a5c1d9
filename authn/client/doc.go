// Package client is the pod side of the JWT authenticator: what
// sower-authn-client (seed 000's "Kubernetes Authenticator Client") runs in
// an application pod's init container or sidecar.
//
// It reads the pod's projected service-account token, exchanges it for a
// Conjur access token at the authn-jwt endpoint
// (POST <authn URL>/<account>[/<host>]/authenticate, body jwt=<token>), and
// writes the access token, Conjur's JSON form, atomically to a file on a
// volume the application shares (default /run/conjur/access-token). In init
// mode it does that once; in sidecar mode it keeps the file fresh, fetching
// a new token when half of the current one's life has passed, long before
// it expires. Every failure is retried with exponential backoff and jitter,
// and logged with what failed and what to check.
//
// Use:
//
//	err := client.Run(ctx, client.Config{
//		AuthnURL: "https://conjur-follower.conjur.svc/authn-jwt/prod", Account: "acme",
//		Host: "host/conjur/authn-k8s/prod/apps/shop/deployment/web", Pin: pin,
//	})
//
// The server trusts nothing the client says beyond the token: a host named
// in the URL must be one the token's workload may log in as.
package client
