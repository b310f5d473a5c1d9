package archive_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

// The seed service seals a Follower seed to the recipient a node sent; the
// node, holding only the CA pin and its age identity, verifies and unpacks
// it.
func Example() {
	// The Leader side: the cluster CA and a seed-signing certificate (in
	// sower these come from pki).
	ca, caKey := exampleCert(nil, nil, true)
	signer, signKey := exampleCert(ca, caKey, false)
	pin := pki.PinOf(ca)

	builder, err := archive.NewBuilder(archive.Signer{Key: signKey, Chain: []*x509.Certificate{signer, ca}})
	if err != nil {
		log.Fatal(err)
	}

	// The node makes an identity in memory and sends its recipient.
	identity, err := age.GenerateX25519Identity()
	if err != nil {
		log.Fatal(err)
	}
	recipient, err := archive.ParseRecipient(identity.Recipient().String())
	if err != nil {
		log.Fatal(err)
	}

	now := time.Now()
	var sealed bytes.Buffer
	_, err = builder.Seal(&sealed, recipient, archive.Metadata{
		SeedID:    "seed-0001",
		Kind:      archive.KindFollower,
		Account:   "myorg",
		Cluster:   "production",
		Node:      archive.Node{Name: "follower-0"},
		Hostnames: []string{"conjur-follower.conjur.svc.cluster.local"},
		Endpoints: archive.Endpoints{Leader: []string{"https://leader.example.com:8443"}},
		CAPin:     pin,
		IssuedAt:  now,
		ExpiresAt: now.Add(time.Hour),
	}, []archive.File{
		{Path: "ca/bundle.pem", Mode: 0o644, Data: []byte("-----BEGIN CERTIFICATE-----\n...")},
		{Path: "data.key", Data: make([]byte, 32)},
	})
	if err != nil {
		log.Fatal(err)
	}

	// The node side: verify with the pin, unpack atomically.
	tmp, err := os.MkdirTemp("", "seed-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	m, err := archive.Unpack(&sealed, filepath.Join(tmp, "seed"), pin, identity)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Format, m.Kind, m.SeedID)
	for _, f := range m.Files {
		fi, err := os.Stat(filepath.Join(tmp, "seed", f.Path))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s listed %04o written %04o\n", f.Path, uint32(f.Mode), uint32(fi.Mode().Perm()))
	}
	// Output:
	// sower-seed/v1 follower seed-0001
	// ca/bundle.pem listed 0644 written 0600
	// data.key listed 0600 written 0600
}

// exampleCert makes a CA certificate (parent nil) or a signing certificate
// issued by parent.
func exampleCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "seed signer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	if isCA {
		tmpl.Subject.CommonName = "cluster CA"
		tmpl.IsCA = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return cert, key
}
