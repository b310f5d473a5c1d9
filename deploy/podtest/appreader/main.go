// Command appreader is the application container of deploy/podtest's
// Follower pod test: what an application next to sower-authn-client does.
// It reads the Conjur access token the authn client wrote, reads one secret
// with it from CONJUR_APPLIANCE_URL (the Followers' Service name) and prints
// one JSON line saying what it got and which certificate served it; then it
// waits to be stopped, so that the pod stays up for the test to inspect.
//
// Environment: CONJUR_APPLIANCE_URL, CONJUR_ACCOUNT, CONJUR_AUTHN_TOKEN_FILE,
// CONJUR_SSL_CERTIFICATE (the cluster CA, PEM), SECRET_ID.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Result is the line appreader prints (prefixed "appreader: ").
type Result struct {
	Status   int      `json:"status"`
	Value    string   `json:"value"`
	Revision string   `json:"revision"`
	Serial   string   `json:"serial"`
	DNSNames []string `json:"dns_names"`
	Error    string   `json:"error,omitempty"`
}

func main() {
	res := read(2 * time.Minute)
	line, _ := json.Marshal(res)
	fmt.Println("appreader: " + string(line))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

// read retries until it reads the secret or the deadline passes: the
// token file may not be written yet when the container starts.
func read(deadline time.Duration) Result {
	end := time.Now().Add(deadline)
	for {
		res, err := readOnce()
		if err == nil || time.Now().After(end) {
			if err != nil {
				res.Error = err.Error()
			}
			return res
		}
		fmt.Fprintln(os.Stderr, "appreader: retrying:", err)
		time.Sleep(time.Second)
	}
}

func readOnce() (Result, error) {
	var res Result
	tok, err := os.ReadFile(os.Getenv("CONJUR_AUTHN_TOKEN_FILE"))
	if err != nil {
		return res, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(os.Getenv("CONJUR_SSL_CERTIFICATE"))) {
		return res, errors.New("CONJUR_SSL_CERTIFICATE holds no certificate")
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	u := strings.TrimSuffix(os.Getenv("CONJUR_APPLIANCE_URL"), "/") + "/secrets/" + os.Getenv("CONJUR_ACCOUNT") +
		"/variable/" + strings.ReplaceAll(url.PathEscape(os.Getenv("SECRET_ID")), "/", "%2F")
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return res, err
	}
	req.Header.Set("Authorization", `Token token="`+base64.StdEncoding.EncodeToString(tok)+`"`)
	resp, err := c.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	res.Status, res.Revision = resp.StatusCode, resp.Header.Get("X-Sower-Revision")
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		leaf := resp.TLS.PeerCertificates[0]
		res.Serial, res.DNSNames = leaf.SerialNumber.Text(16), leaf.DNSNames
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	res.Value = string(body)
	return res, nil
}
