package archive_test

import (
	"archive/tar"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

// testPKI is a cluster CA and a seed-signing certificate it issued.
type testPKI struct {
	ca        *x509.Certificate
	caKey     crypto.Signer
	signer    archive.Signer
	pin       pki.Pin
	serverPEM []byte // a server certificate and key, as a seed carries them
	serverKey []byte
}

type keyKind string

const (
	keyP256    keyKind = "ecdsa-p256"
	keyP384    keyKind = "ecdsa-p384"
	keyP521    keyKind = "ecdsa-p521"
	keyEd25519 keyKind = "ed25519"
	keyRSA     keyKind = "rsa-2048"
)

func newKey(tb testing.TB, k keyKind) crypto.Signer {
	tb.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch k {
	case keyP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case keyP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case keyP521:
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case keyEd25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case keyRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		tb.Fatalf("unknown key kind %q", k)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

var serial atomic.Int64

func issue(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	tb.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(serial.Add(1))
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func caTemplate(name string, notBefore time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
}

func leafTemplate(name string, notBefore time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		NotBefore:   notBefore,
		NotAfter:    notBefore.Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
}

// chainShape says how the signing certificate relates to the pinned CA.
type chainShape string

const (
	shapeLeaf         chainShape = "leaf-ca"              // CA -> signer
	shapeCASigns      chainShape = "ca-signs"             // the CA key signs seeds
	shapeIntermediate chainShape = "leaf-intermediate-ca" // root (pinned) -> intermediate -> signer
	shapePinInter     chainShape = "pin-intermediate"     // as above, the intermediate is pinned
)

func newPKI(tb testing.TB, k keyKind, shape chainShape) *testPKI {
	tb.Helper()
	nb := time.Now().Add(-time.Hour)
	caKey := newKey(tb, k)
	ca := issue(tb, caTemplate("sower test CA", nb), nil, caKey.Public(), caKey)
	p := &testPKI{ca: ca, caKey: caKey, pin: pki.PinOf(ca)}
	switch shape {
	case shapeCASigns:
		p.signer = archive.Signer{Key: caKey, Chain: []*x509.Certificate{ca}}
	case shapeLeaf:
		key := newKey(tb, k)
		leaf := issue(tb, leafTemplate("seed signer", nb), ca, key.Public(), caKey)
		p.signer = archive.Signer{Key: key, Chain: []*x509.Certificate{leaf, ca}}
	case shapeIntermediate, shapePinInter:
		interKey := newKey(tb, k)
		inter := issue(tb, caTemplate("sower intermediate", nb), ca, interKey.Public(), caKey)
		key := newKey(tb, k)
		leaf := issue(tb, leafTemplate("seed signer", nb), inter, key.Public(), interKey)
		p.signer = archive.Signer{Key: key, Chain: []*x509.Certificate{leaf, inter, ca}}
		if shape == shapePinInter {
			p.pin = pki.PinOf(inter)
		}
	default:
		tb.Fatalf("unknown chain shape %q", shape)
	}
	// A Follower's server certificate, for realistic seed contents.
	srvKey := newKey(tb, keyP256)
	srv := issue(tb, leafTemplate("conjur-follower.conjur.svc.cluster.local", nb), ca, srvKey.Public(), caKey)
	p.serverPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Raw})
	der, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		tb.Fatal(err)
	}
	p.serverKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return p
}

func (p *testPKI) builder(tb testing.TB) *archive.Builder {
	tb.Helper()
	b, err := archive.NewBuilder(p.signer)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testMetadata(pin pki.Pin, issued time.Time) archive.Metadata {
	return archive.Metadata{
		SeedID:    "seed-0001",
		Kind:      archive.KindFollower,
		Account:   "myorg",
		Cluster:   "production",
		Node:      archive.Node{Name: "follower-0", Role: "myorg:host:conjur/followers/follower-0"},
		Hostnames: []string{"conjur-follower.conjur.svc.cluster.local"},
		Endpoints: archive.Endpoints{
			Leader:   []string{"https://leader.example.com:8443"},
			Standbys: []string{"https://standby-1.example.com:8443", "https://standby-2.example.com:8443"},
		},
		CAPin:     pin,
		IssuedAt:  issued,
		ExpiresAt: issued.Add(time.Hour),
	}
}

// followerFiles is what a Follower seed holds.
func followerFiles(p *testPKI) []archive.File {
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw})
	dataKey := bytes.Repeat([]byte{0x5a}, 32)
	return []archive.File{
		{Path: "ca/bundle.pem", Mode: 0o644, Data: caPEM},
		{Path: "tls/server.crt", Data: p.serverPEM},
		{Path: "tls/server.key", Mode: 0o400, Data: p.serverKey},
		{Path: "replication/client.crt", Data: p.serverPEM},
		{Path: "replication/client.key", Mode: 0o600, Data: p.serverKey},
		{Path: "data.key", Data: dataKey},
	}
}

func buildPlain(tb testing.TB, p *testPKI, md archive.Metadata, files []archive.File) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := p.builder(tb).WritePlain(&buf, md, files); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func buildSealed(tb testing.TB, p *testPKI, to age.Recipient, md archive.Metadata, files []archive.File) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := p.builder(tb).Seal(&buf, to, md, files); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func seal(tb testing.TB, to age.Recipient, plain []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, to)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func newIdentity(tb testing.TB) *age.X25519Identity {
	tb.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// entry is one tar entry, for rewriting archives in tests.
type entry struct {
	hdr  tar.Header
	data []byte
}

func readEntries(tb testing.TB, plain []byte) []entry {
	tb.Helper()
	tr := tar.NewReader(bytes.NewReader(plain))
	var out []entry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, entry{hdr: *hdr, data: data})
	}
}

func writeEntries(tb testing.TB, entries []entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// rewrite reads a plain archive, lets fn change its entries and writes it
// back: the way an attacker who cannot sign would change a seed.
func rewrite(tb testing.TB, plain []byte, fn func([]entry) []entry) []byte {
	tb.Helper()
	return writeEntries(tb, fn(readEntries(tb, plain)))
}

func reg(name string, data []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600}, data: data}
}

func special(typ byte, name, link string) entry {
	return entry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o600, Devmajor: 1, Devminor: 3}}
}

// resign replaces the manifest with edit(manifest) and signs it the way
// docs/seed-format.md says, with signer: what a second implementation of
// the format would do, and how a test gets a validly signed odd manifest.
func resign(tb testing.TB, plain []byte, s archive.Signer, edit func(map[string]any)) []byte {
	tb.Helper()
	return rewrite(tb, plain, func(es []entry) []entry {
		var m map[string]any
		if err := json.Unmarshal(es[0].data, &m); err != nil {
			tb.Fatal(err)
		}
		edit(m)
		raw, err := json.Marshal(m)
		if err != nil {
			tb.Fatal(err)
		}
		es[0].data = raw
		es[1].data = signDoc(tb, s, raw)
		return es
	})
}

// signDoc makes manifest.sig as docs/seed-format.md describes it, for
// ECDSA P-256 and Ed25519 signers.
func signDoc(tb testing.TB, s archive.Signer, manifest []byte) []byte {
	tb.Helper()
	var (
		alg string
		sig []byte
		err error
	)
	switch s.Key.Public().(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(manifest)
		alg = "ECDSA-SHA256"
		sig, err = s.Key.Sign(rand.Reader, d[:], crypto.SHA256)
	case ed25519.PublicKey:
		alg = "Ed25519"
		sig, err = s.Key.Sign(rand.Reader, manifest, crypto.Hash(0))
	default:
		tb.Fatalf("signDoc: unsupported key %T", s.Key)
	}
	if err != nil {
		tb.Fatal(err)
	}
	chain := make([][]byte, len(s.Chain))
	for i, c := range s.Chain {
		chain[i] = c.Raw
	}
	out, err := json.Marshal(map[string]any{"algorithm": alg, "signature": sig, "chain": chain})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// assertNothingWritten fails unless parent is as empty as it was: no
// target, no staging directory, nothing.
func assertNothingWritten(tb testing.TB, parent string) {
	tb.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		tb.Errorf("left behind: %s", filepath.Join(parent, e.Name()))
	}
}

func perm(tb testing.TB, path string) fs.FileMode {
	tb.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Mode().Perm()
}
