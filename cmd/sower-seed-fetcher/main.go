// Command sower-seed-fetcher runs in a Follower pod's init container: it
// fetches the pod's Follower seed from the Leader, sealed to a key that only
// ever lives in its memory, verifies it against the CA pin, unpacks it into
// the shared volume and exits 0. On failure it retries with backoff until
// its deadline, then exits 1 with one line saying what failed.
//
// Environment (Conjur's seed-fetcher names where they exist):
//
//	CONJUR_SEED_FILE_URL   https://<leader>:8443/configuration/<account>/seed/follower (required)
//	SOWER_CA_PIN           sha256:<hex> from `sower ca pin` (required)
//	CONJUR_ACCOUNT         the account (required)
//	FOLLOWER_HOSTNAME      the Follower's DNS name(s), comma-separated (required)
//	SEEDFILE_DIR           shared volume; the seed goes to $SEEDFILE_DIR/follower (default /tmp/seedfile)
//	AUTHENTICATOR_ID       authn-jwt service id; with CONJUR_APPLIANCE_URL gives the JWT authenticator
//	CONJUR_AUTHN_URL       the authenticator's URL, overrides the one derived above
//	JWT_TOKEN_PATH         projected service-account token (default /var/run/secrets/kubernetes.io/serviceaccount/token)
//	CONJUR_AUTHN_LOGIN     the host to log in as (host/...): with a JWT it goes in the authenticator's
//	                       URL (/authn-jwt/<id>/<account>/<host>/authenticate), needed when the
//	                       authenticator has no token-app-property
//	CONJUR_AUTHN_API_KEY   API-key authentication (as CONJUR_AUTHN_LOGIN) instead of a JWT
//	CONJUR_SSL_CERTIFICATE the CA bundle (PEM), optional; must hold the pinned CA
//	SEED_FETCH_DEADLINE    how long to keep trying (default 5m)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sowerproject/sower/internal/podargs"
	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/fetch"
)

// usage is what --help prints.
const usage = `Usage: sower-seed-fetcher   (configured by environment variables only; no arguments)

Fetches this Follower pod's seed from the Leader, sealed to a key that lives
only in memory, verifies it against the CA pin and unpacks it into
$SEEDFILE_DIR/follower; exits 0 when done, 1 with one line saying what failed.

Environment:
  CONJUR_SEED_FILE_URL   https://<leader>:8443/configuration/<account>/seed/follower (required)
  SOWER_CA_PIN           sha256:<hex> from ` + "`" + `sower ca pin` + "`" + ` (required)
  CONJUR_ACCOUNT         the account (required)
  FOLLOWER_HOSTNAME      the Follower's DNS name(s), comma-separated (required)
  SEEDFILE_DIR           shared volume (default /tmp/seedfile)
  AUTHENTICATOR_ID       authn-jwt service id; with CONJUR_APPLIANCE_URL gives the JWT authenticator
  CONJUR_AUTHN_URL       the authenticator's URL, overrides the one derived above
  JWT_TOKEN_PATH         projected token (default /var/run/secrets/kubernetes.io/serviceaccount/token)
  CONJUR_AUTHN_LOGIN     the host to log in as (host/...); with a JWT it goes into the URL
  CONJUR_AUTHN_API_KEY   API-key authentication instead of a JWT
  CONJUR_SSL_CERTIFICATE the CA bundle (PEM), optional; must hold the pinned CA
  SEED_FETCH_DEADLINE    how long to keep trying (default 5m)
`

func main() {
	if code, exit := podargs.Check("sower-seed-fetcher", usage, os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sower-seed-fetcher:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run() error {
	lg := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	pin, err := pki.ParsePin(os.Getenv("SOWER_CA_PIN"))
	if err != nil {
		return fmt.Errorf("SOWER_CA_PIN: %w", err)
	}
	deadline, err := time.ParseDuration(env("SEED_FETCH_DEADLINE", "5m"))
	if err != nil {
		return fmt.Errorf("SEED_FETCH_DEADLINE: %w", err)
	}
	account := os.Getenv("CONJUR_ACCOUNT")
	authnURL := os.Getenv("CONJUR_AUTHN_URL")
	if authnURL == "" && os.Getenv("AUTHENTICATOR_ID") != "" && os.Getenv("CONJUR_APPLIANCE_URL") != "" {
		authnURL = strings.TrimSuffix(os.Getenv("CONJUR_APPLIANCE_URL"), "/") + "/authn-jwt/" + os.Getenv("AUTHENTICATOR_ID")
	}
	var hostnames []string
	for _, h := range strings.Split(os.Getenv("FOLLOWER_HOSTNAME"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			hostnames = append(hostnames, h)
		}
	}
	c := fetch.Config{
		SeedURL: os.Getenv("CONJUR_SEED_FILE_URL"), Account: account, Hostnames: hostnames,
		Dir: filepath.Join(env("SEEDFILE_DIR", "/tmp/seedfile"), "follower"), Pin: pin,
		CABundle: []byte(os.Getenv("CONJUR_SSL_CERTIFICATE")), AuthnURL: authnURL,
		JWTPath: env("JWT_TOKEN_PATH", "/var/run/secrets/kubernetes.io/serviceaccount/token"),
		Login:   os.Getenv("CONJUR_AUTHN_LOGIN"), APIKey: os.Getenv("CONJUR_AUTHN_API_KEY"),
		Deadline: deadline, Logger: lg,
	}
	if c.APIKey != "" {
		c.JWTPath = ""
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := fetch.Run(ctx, c)
	if err != nil {
		return err
	}
	lg.Info("seed unpacked", "seed_id", res.Manifest.SeedID, "dir", c.Dir, "expires_at", res.Manifest.ExpiresAt, "attempts", res.Attempts)
	return nil
}
