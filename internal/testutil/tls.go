package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// CAFile is where a node keeps its CA bundle under its data dir.
func CAFile(dataDir string) string { return filepath.Join(dataDir, "tls", "ca.pem") }

// TLSConfig trusts the CA bundle of the node whose data dir is dataDir.
func TLSConfig(t testing.TB, dataDir string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(CAFile(dataDir))
	if err != nil {
		t.Fatalf("read the node's CA bundle: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", CAFile(dataDir))
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// HTTPClient is an HTTPS client that trusts the node's CA, as a user with
// the CA bundle (or curl --cacert) would be.
func HTTPClient(t testing.TB, dataDir string) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: TLSConfig(t, dataDir)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
