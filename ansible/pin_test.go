//go:build linux

package ansible_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sowerproject/sower/pki"
)

// filterScript runs the role's sower_pinned_ca filter on {"bundle", "pin"}
// read from stdin and prints {"pem"} or {"err"}.
const filterScript = `
import json, sys
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
import sower_pin
req = json.load(sys.stdin)
try:
    print(json.dumps({"pem": sower_pin.sower_pinned_ca(req["bundle"], req["pin"])}))
except Exception as e:
    print(json.dumps({"err": str(e)}))
`

// TestPinnedCAFilter checks the filter the role trusts the Leader with: it
// must compute the same pin as pki.PinOf (the hash of the certificate's raw
// SubjectPublicKeyInfo) for every key type sower may meet, and return only
// the pinned certificate, never another one of the bundle.
func TestPinnedCAFilter(t *testing.T) {
	python := ansiblePython(t)
	rootKey := ecKey(t)
	root := newCert(t, "root", rootKey, nil, nil)
	inter := newCert(t, "intermediate", ecKey(t), root, rootKey)
	rsaRoot := newCert(t, "rsa root", rsaKey(t), nil, nil)
	edRoot := newCert(t, "ed25519 root", edKey(t), nil, nil)
	impostor := newCert(t, "impostor", ecKey(t), nil, nil)

	tests := map[string]struct {
		bundle  string
		pin     string
		want    *x509.Certificate
		wantErr string
	}{
		"root of intermediate+root": {bundle: pemOf(inter, root), pin: pinOf(root), want: root},
		"intermediate pinned":       {bundle: pemOf(inter, root), pin: pinOf(inter), want: inter},
		"impostor first is skipped": {bundle: pemOf(impostor, root), pin: pinOf(root), want: root},
		"RSA key (long DER lengths)": {
			bundle: pemOf(rsaRoot), pin: pinOf(rsaRoot), want: rsaRoot,
		},
		"Ed25519 key":               {bundle: pemOf(edRoot), pin: pinOf(edRoot), want: edRoot},
		"upper-case pin":            {bundle: pemOf(root), pin: strings.ToUpper(pinOf(root)[:7]) + strings.ToUpper(pinOf(root)[7:]), want: root},
		"pin surrounded by spaces":  {bundle: pemOf(root), pin: " " + pinOf(root) + "\n", want: root},
		"broken block then root":    {bundle: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" + pemOf(root), pin: pinOf(root), want: root},
		"no certificate matches":    {bundle: pemOf(inter, root), pin: pinOf(impostor), wantErr: "matches sower_ca_pin"},
		"only the impostor":         {bundle: pemOf(impostor), pin: pinOf(root), wantErr: "matches sower_ca_pin"},
		"empty bundle":              {bundle: "", pin: pinOf(root), wantErr: "holds no PEM certificate"},
		"HTML instead of a bundle":  {bundle: "<html>proxy login</html>", pin: pinOf(root), wantErr: "holds no PEM certificate"},
		"pin without sha256 prefix": {bundle: pemOf(root), pin: strings.TrimPrefix(pinOf(root), "sha256:"), wantErr: "64 hex digits"},
		"pin too short":             {bundle: pemOf(root), pin: pinOf(root)[:40], wantErr: "64 hex digits"},
		"empty pin":                 {bundle: pemOf(root), pin: "", wantErr: "64 hex digits"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := runFilter(t, python, tc.bundle, tc.pin)
			if tc.wantErr != "" {
				if !strings.Contains(err, tc.wantErr) || got != "" {
					t.Fatalf("got pem=%q err=%q, want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != "" {
				t.Fatalf("unexpected error: %s", err)
			}
			blk, rest := pem.Decode([]byte(got))
			if blk == nil || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("want exactly one PEM certificate, got %q", got)
			}
			if !bytes.Equal(blk.Bytes, tc.want.Raw) {
				t.Fatalf("returned %q, want the certificate %q", subjectOf(t, blk.Bytes), tc.want.Subject.CommonName)
			}
		})
	}
}

func runFilter(t *testing.T, python, bundle, pin string) (pemOut, errOut string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("roles", "sower_standby", "filter_plugins"))
	if err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(map[string]string{"bundle": bundle, "pin": pin})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-B", "-c", filterScript, dir)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run the filter: %v\n%s", err, stderr.String())
	}
	var res struct{ PEM, Err string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("filter output %q: %v", out, err)
	}
	return res.PEM, res.Err
}

// ansiblePython is the interpreter ansible-playbook runs on (its shebang):
// the filter runs there, with ansible importable.
func ansiblePython(t *testing.T) string {
	t.Helper()
	ap := requireAnsible(t)
	f, err := os.Open(ap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "#!") {
		t.Fatalf("%s has no shebang line", ap)
	}
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if len(fields) == 0 {
		t.Fatalf("%s: empty shebang", ap)
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
		p, err := exec.LookPath(fields[len(fields)-1])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return fields[0]
}

func ecKey(t *testing.T) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t *testing.T) crypto.Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newCert makes a CA certificate for key, signed by parent (and its key),
// or self-signed when parent is nil.
func newCert(t *testing.T, cn string, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parentKey, parent
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(certs ...*x509.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

func pinOf(c *x509.Certificate) string { return pki.PinOf(c).String() }

func subjectOf(t *testing.T, der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "(unparsable)"
	}
	return c.Subject.CommonName
}
