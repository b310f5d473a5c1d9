package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sowerproject/sower/pki"
)

// clientFlags declares how a client command reaches a node and who it is.
// Every flag is also a SOWER_ environment variable (SOWER_SERVER, ...).
func clientFlags(fs *pflag.FlagSet) {
	fs.String("server", envOr("SOWER_SERVER", "https://127.0.0.1:8443"), "URL of a sower node's REST endpoint (env SOWER_SERVER)")
	fs.String("ca-pin", os.Getenv("SOWER_CA_PIN"), "trust the server whose chain leads to this CA key, sha256:<hex> from `sower ca pin` (env SOWER_CA_PIN)")
	fs.String("ca-file", envOr("SOWER_CA_FILE", "./.sower/tls/ca.pem"), "CA bundle to trust when no --ca-pin is given (env SOWER_CA_FILE)")
	fs.Bool("insecure-skip-ca-verify", false, "do not verify the server at all (prints a warning; never in production)")
	fs.String("account", envOr("SOWER_ACCOUNT", "default"), "Conjur account (env SOWER_ACCOUNT)")
	fs.String("login", envOr("SOWER_LOGIN", "admin"), "login to authenticate as: a user id or host/<id> (env SOWER_LOGIN)")
	fs.String("api-key-file", envOr("SOWER_API_KEY_FILE", "./.sower/admin.key"), "file holding the login's API key (env SOWER_API_KEY_FILE; SOWER_API_KEY overrides it)")
}

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

// apiClient calls a node's REST API as one login.
type apiClient struct {
	base    *url.URL
	account string
	login   string
	apiKey  string
	http    *http.Client
	token   string
}

// newAPIClient reads the client flags. It does not contact the node.
func newAPIClient(cmd *cobra.Command) (*apiClient, error) {
	fs := cmd.Flags()
	server, _ := fs.GetString("server")
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &usageError{fmt.Errorf("server %q: give the node's URL, for example https://leader.example:8443", server)}
	}
	account, _ := fs.GetString("account")
	login, _ := fs.GetString("login")
	key := os.Getenv("SOWER_API_KEY")
	if key == "" {
		path, _ := fs.GetString("api-key-file")
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, &usageError{fmt.Errorf("api-key-file %s: %w; point --api-key-file at the login's key or set SOWER_API_KEY", path, err)}
		}
		key = strings.TrimSpace(string(raw))
	}
	tlsCfg, err := clientTLS(cmd, u)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &apiClient{base: u, account: account, login: login, apiKey: key, http: &http.Client{Timeout: 2 * time.Minute, Transport: tr}}, nil
}

// clientTLS decides how a client trusts the server: by the CA pin (trust on
// first contact, as kubeadm's discovery hash), by a CA bundle file, or, only
// when asked explicitly and with a warning, not at all.
func clientTLS(cmd *cobra.Command, u *url.URL) (*tls.Config, error) {
	fs := cmd.Flags()
	if u.Scheme != "https" {
		return nil, nil
	}
	pinStr, _ := fs.GetString("ca-pin")
	caFile, _ := fs.GetString("ca-file")
	skip, _ := fs.GetBool("insecure-skip-ca-verify")
	switch {
	case skip:
		fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: --insecure-skip-ca-verify: the server is not verified; anyone on the path can read and change this traffic")
		return pki.InsecureClientTLS(nil), nil
	case pinStr != "":
		pin, err := pki.ParsePin(pinStr)
		if err != nil {
			return nil, &usageError{err}
		}
		return pki.PinnedClientTLS(pin, u.Hostname(), nil)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &usageError{fmt.Errorf("no way to verify %s: give --ca-pin (run `sower ca pin` on the Leader) or --ca-file with the CA bundle (%v)", u.Host, err)}
	}
	roots, err := pki.ParseCertificatesPEM(pem)
	if err != nil {
		return nil, &usageError{fmt.Errorf("ca-file %s: %w", caFile, err)}
	}
	return pki.ClientTLS(roots, u.Hostname(), nil)
}

// authenticate exchanges the API key for an access token (Conjur's
// POST /authn/{account}/{login}/authenticate) once per client.
func (c *apiClient) authenticate(ctx context.Context) error {
	if c.token != "" {
		return nil
	}
	u := c.url("authn", c.account, c.login, "authenticate")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(c.apiKey))
	if err != nil {
		return err
	}
	req.Header.Set("Accept-Encoding", "base64")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("authenticate as %s: %s; check --login and the API key", c.login, resp.Status)
	}
	if _, err := base64.StdEncoding.DecodeString(string(body)); err != nil {
		return fmt.Errorf("authenticate as %s: the server sent no base64 token", c.login)
	}
	c.token = `Token token="` + string(body) + `"`
	return nil
}

// url joins escaped path segments onto the base URL, as Conjur clients do
// (an id's '/' travels as %2F inside its segment).
func (c *apiClient) url(segments ...string) string {
	esc := make([]string, len(segments))
	for i, s := range segments {
		esc[i] = url.PathEscape(s)
	}
	return strings.TrimSuffix(c.base.String(), "/") + "/" + strings.Join(esc, "/")
}

// do sends an authenticated request and returns the status and body. A
// non-2xx status is returned as an error carrying the server's message.
func (c *apiClient) do(ctx context.Context, method, u string, body io.Reader, contentType string) (int, []byte, error) {
	resp, out, err := c.doResp(ctx, method, u, body, contentType)
	if resp == nil {
		return 0, out, err
	}
	return resp.StatusCode, out, err
}

// doResp is do, returning the response for its headers.
func (c *apiClient) doResp(ctx context.Context, method, u string, body io.Reader, contentType string) (*http.Response, []byte, error) {
	if err := c.authenticate(ctx); err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", c.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("reach %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode/100 != 2 {
		return resp, out, fmt.Errorf("%s %s: %s", method, req.URL.Path, serverMessage(resp.Status, out))
	}
	return resp, out, nil
}

// serverMessage extracts the message of Conjur's error JSON or gRPC
// gateway's error JSON, else returns the status line.
func serverMessage(status string, body []byte) string {
	var conjurErr struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	var gwErr struct{ Message string }
	if json.Unmarshal(body, &conjurErr) == nil && conjurErr.Error.Message != "" {
		return status + ": " + conjurErr.Error.Message
	}
	if json.Unmarshal(body, &gwErr) == nil && gwErr.Message != "" {
		return status + ": " + gwErr.Message
	}
	return status
}
