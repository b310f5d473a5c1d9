// Command sower-authn-client runs in an application pod, as an init
// container or a sidecar (seed 000's "Kubernetes Authenticator Client"). It
// exchanges the pod's projected service-account token for a Conjur access
// token at the JWT authenticator and writes it, atomically, to a volume the
// application shares. As a sidecar it writes a fresh token when half of the
// current one's life has passed. Failures are retried with exponential
// backoff and jitter; an init container that cannot authenticate before its
// deadline exits 1 with one line saying what failed.
//
// Environment (Conjur's names where they exist):
//
//	CONJUR_AUTHN_URL          https://<conjur>/authn-jwt/<service-id> (or
//	                          CONJUR_APPLIANCE_URL with CONJUR_AUTHN_JWT_SERVICE_ID)
//	CONJUR_ACCOUNT            the account (required)
//	CONJUR_AUTHN_LOGIN        the host to log in as, host/...; leave it out when
//	                          the service's token-app-property names the host
//	JWT_TOKEN_PATH            projected token (default /var/run/secrets/kubernetes.io/serviceaccount/token)
//	CONJUR_AUTHN_TOKEN_FILE   where the access token goes (default /run/conjur/access-token)
//	CONTAINER_MODE            init (default) or sidecar
//	SOWER_CA_PIN              sha256:<hex> from `sower ca pin`
//	CONJUR_SSL_CERTIFICATE    the CA bundle (PEM), or CONJUR_CERT_FILE, its path
//	CONJUR_TOKEN_TIMEOUT      sidecar refresh period, e.g. 6m (default: half the token's life)
//	SOWER_AUTHN_DEADLINE      how long an init container keeps trying (default 5m)
//
// For example, as an init container:
//
//	env:
//	- {name: CONJUR_AUTHN_URL, value: "https://conjur-follower.conjur.svc/authn-jwt/prod"}
//	- {name: CONJUR_ACCOUNT, value: acme}
//	- {name: CONJUR_AUTHN_LOGIN, value: "host/conjur/authn-k8s/prod/apps/shop/deployment/web"}
//	- {name: SOWER_CA_PIN, value: "sha256:..."}
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sowerproject/sower/authn/client"
	"github.com/sowerproject/sower/internal/podargs"
)

// usage is what --help prints.
const usage = `Usage: sower-authn-client   (configured by environment variables only; no arguments)

Exchanges the pod's projected service-account token for a Conjur access token
at the JWT authenticator and writes it to CONJUR_AUTHN_TOKEN_FILE. As an init
container it exits 0 once the token is written; as a sidecar
(CONTAINER_MODE=sidecar) it refreshes the token at half its life, less up to
10% jitter.

Environment:
  CONJUR_AUTHN_URL          https://<conjur>/authn-jwt/<service-id> (or CONJUR_APPLIANCE_URL
                            with CONJUR_AUTHN_JWT_SERVICE_ID)
  CONJUR_ACCOUNT            the account (required)
  CONJUR_AUTHN_LOGIN        the host to log in as, host/...; leave it out when the
                            service's token-app-property names the host
  JWT_TOKEN_PATH            projected token (default /var/run/secrets/kubernetes.io/serviceaccount/token)
  CONJUR_AUTHN_TOKEN_FILE   where the access token goes (default /run/conjur/access-token)
  CONTAINER_MODE            init (default) or sidecar
  SOWER_CA_PIN              sha256:<hex> from ` + "`" + `sower ca pin` + "`" + `
  CONJUR_SSL_CERTIFICATE    the CA bundle (PEM), or CONJUR_CERT_FILE, its path
  CONJUR_TOKEN_TIMEOUT      sidecar refresh period, e.g. 6m (default: half the token's life)
  SOWER_AUTHN_DEADLINE      how long an init container keeps trying (default 5m)
`

func main() {
	if code, exit := podargs.Check("sower-authn-client", usage, os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sower-authn-client:", err)
		os.Exit(1)
	}
}

func run() error {
	getenv := os.Getenv
	if path := os.Getenv("CONJUR_CERT_FILE"); path != "" && os.Getenv("CONJUR_SSL_CERTIFICATE") == "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("CONJUR_CERT_FILE: %w", err)
		}
		getenv = func(k string) string {
			if k == "CONJUR_SSL_CERTIFICATE" {
				return string(pem)
			}
			return os.Getenv(k)
		}
	}
	c, err := client.FromEnv(getenv)
	if err != nil {
		return err
	}
	c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return client.Run(ctx, c)
}
