package pki_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
)

func TestBootstrapAndLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	chain := f.ca.Chain()
	if len(chain) != 2 {
		t.Fatalf("chain has %d certificates, want intermediate and root", len(chain))
	}
	inter, root := chain[0], chain[1]
	if !root.IsCA || !inter.IsCA || inter.MaxPathLen != 0 || !inter.MaxPathLenZero {
		t.Fatal("root and intermediate are not CAs with the right path lengths")
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		t.Fatalf("intermediate not signed by root: %v", err)
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || root.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("root key %T, want ECDSA P-256", root.PublicKey)
	}
	if f.ca.Pin() != pki.PinOf(root) || !f.ca.Roots()[0].Equal(root) {
		t.Fatal("pin and roots must be the root's")
	}
	if got, err := pki.ParseCertificatesPEM(f.ca.BundlePEM()); err != nil || len(got) != 2 || !got[0].Equal(inter) {
		t.Fatalf("bundle: %v", err)
	}

	// The stored record is one sealed value: no key in clear.
	if keys := f.store.Keys(); len(keys) != 1 || keys[0] != pki.DefaultCAStoreKey {
		t.Fatalf("store keys %v", keys)
	}
	raw, _ := f.store.Get(ctx, pki.DefaultCAStoreKey)
	if bytes.Contains(raw, []byte("PRIVATE KEY")) || bytes.Contains(raw, []byte("CERTIFICATE")) {
		t.Fatal("CA record stored in plaintext")
	}

	if _, err := pki.Bootstrap(ctx, f.config()); !errors.Is(err, pki.ErrCAExists) {
		t.Fatalf("second bootstrap: %v, want ErrCAExists", err)
	}

	// A Standby with the same store and data key takes over issuing.
	standby, err := pki.Load(ctx, f.config(), pki.WithClock(f.clock))
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close()
	if standby.Pin() != f.ca.Pin() || !standby.Chain()[0].Equal(inter) {
		t.Fatal("loaded CA differs")
	}
	crt, err := standby.Issue(ctx, pki.ProfileEtcdClient, pki.Request{CommonName: "standby-1"})
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, crt, f.ca.Roots(), f.clock.Now(), x509.ExtKeyUsageClientAuth)
}

func TestLoadRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	raw, _ := f.store.Get(ctx, pki.DefaultCAStoreKey)
	moved := pkitest.NewMemStore()
	moved.Put(ctx, "/elsewhere/ca", raw)
	garbage := pkitest.NewMemStore()
	g, _ := f.keyring.Seal(pki.DefaultCAStoreKey, []byte(`{"format":7}`))
	garbage.Put(ctx, pki.DefaultCAStoreKey, g)

	tests := map[string]struct {
		cfg      pki.Config
		sentinel error
		says     string
	}{
		"empty store":     {pki.Config{Store: pkitest.NewMemStore(), Sealer: f.keyring}, pki.ErrNotFound, "bootstrap the Leader"},
		"wrong data key":  {pki.Config{Store: f.store, Sealer: mustKeyring(t)}, pki.ErrWrongDataKey, "different data key"},
		"record moved":    {pki.Config{Store: moved, Sealer: f.keyring, StoreKey: "/elsewhere/ca"}, pki.ErrOpen, "another key path"},
		"not a CA record": {pki.Config{Store: garbage, Sealer: f.keyring}, nil, "not a sower CA record"},
		"no store":        {pki.Config{Sealer: f.keyring}, nil, "Store is required"},
		"no sealer":       {pki.Config{Store: f.store}, nil, "Sealer is required"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ca, err := pki.Load(ctx, tc.cfg)
			if err == nil {
				ca.Close()
			}
			wantErr(t, "load", err, tc.sentinel, tc.says)
		})
	}
}

// external builds a CA outside sower, as an operator would bring one.
type external struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newExternal(t testing.TB, cn string, parent *external, isCA bool, notAfter time.Time, pathLen int) *external {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Example Corp"}},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              notAfter,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
	}
	if isCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	parentCert, parentKey := tmpl, crypto.Signer(key)
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &external{cert: cert, key: key}
}

func (e *external) keyPEM(t testing.TB, password []byte) []byte {
	t.Helper()
	var opts []pemutil.Options
	if password != nil {
		opts = append(opts, pemutil.WithPassword(password))
	}
	block, err := pemutil.Serialize(e.key, append(opts, pemutil.WithPKCS8(true))...)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

func publicKeyPEM(t testing.TB, e *external) []byte {
	der, err := x509.MarshalPKIXPublicKey(e.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func certsPEM(es ...*external) []byte {
	var certs []*x509.Certificate
	for _, e := range es {
		certs = append(certs, e.cert)
	}
	return pki.EncodeCertificatesPEM(certs)
}

func TestImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	year := t0.Add(365 * 24 * time.Hour)
	root := newExternal(t, "Example Root", nil, true, year, 2)
	inter := newExternal(t, "Example Issuing CA", root, true, year, 0)
	rootPathZero := newExternal(t, "Example Flat Root", nil, true, year, 0)
	leaf := newExternal(t, "not-a-ca", root, false, year, -1)
	expired := newExternal(t, "Old Root", nil, true, t0.Add(-time.Hour), 1)
	stranger := newExternal(t, "Stranger", nil, true, year, 1)

	tests := map[string]struct {
		certPEM, keyPEM []byte
		opts            []pki.Option
		sentinel        error
		says            string
		wantPin         pki.Pin
		wantChainLen    int
		wantRotate      bool
	}{
		"root":                     {certPEM: certsPEM(root), keyPEM: root.keyPEM(t, nil), wantPin: pki.PinOf(root.cert), wantChainLen: 2, wantRotate: true},
		"intermediate with root":   {certPEM: certsPEM(inter, root), keyPEM: inter.keyPEM(t, nil), wantPin: pki.PinOf(root.cert), wantChainLen: 2},
		"intermediate alone":       {certPEM: certsPEM(inter), keyPEM: inter.keyPEM(t, nil), wantPin: pki.PinOf(inter.cert), wantChainLen: 1},
		"root with path length 0":  {certPEM: certsPEM(rootPathZero), keyPEM: rootPathZero.keyPEM(t, nil), wantPin: pki.PinOf(rootPathZero.cert), wantChainLen: 1},
		"encrypted key":            {certPEM: certsPEM(root), keyPEM: root.keyPEM(t, []byte("pw")), opts: []pki.Option{pki.WithKeyPassword([]byte("pw"))}, wantPin: pki.PinOf(root.cert), wantChainLen: 2, wantRotate: true},
		"encrypted, no password":   {certPEM: certsPEM(root), keyPEM: root.keyPEM(t, []byte("pw")), says: "password"},
		"key of another cert":      {certPEM: certsPEM(root), keyPEM: stranger.keyPEM(t, nil), sentinel: pki.ErrKeyMismatch},
		"not a CA":                 {certPEM: certsPEM(leaf), keyPEM: leaf.keyPEM(t, nil), sentinel: pki.ErrNotCA, says: "CA:TRUE"},
		"expired CA":               {certPEM: certsPEM(expired), keyPEM: expired.keyPEM(t, nil), sentinel: pki.ErrExpired, says: "Old Root"},
		"chain out of order":       {certPEM: certsPEM(inter, stranger), keyPEM: inter.keyPEM(t, nil), says: "not signed by the next certificate"},
		"key where cert should be": {certPEM: root.keyPEM(t, nil), keyPEM: root.keyPEM(t, nil), says: "CERTIFICATE"},
		"no PEM":                   {certPEM: []byte("hello"), keyPEM: root.keyPEM(t, nil), says: "no PEM certificate"},
		"public key as key":        {certPEM: certsPEM(root), keyPEM: publicKeyPEM(t, root), says: "not a private key"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := pkitest.NewMemStore()
			kr := mustKeyring(t)
			clock := pkitest.NewClock(t0)
			cfg := pki.Config{Store: store, Sealer: kr}
			ca, err := pki.Import(ctx, cfg, tc.certPEM, tc.keyPEM, append([]pki.Option{pki.WithClock(clock)}, tc.opts...)...)
			if tc.sentinel != nil || tc.says != "" {
				wantErr(t, "import", err, tc.sentinel, tc.says)
				if len(store.Keys()) != 0 {
					t.Fatal("a refused import stored something")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ca.Close()
			if ca.Pin() != tc.wantPin || len(ca.Chain()) != tc.wantChainLen {
				t.Fatalf("pin %s, chain %d; want %s, %d", ca.Pin(), len(ca.Chain()), tc.wantPin, tc.wantChainLen)
			}
			crt, err := ca.Issue(ctx, pki.ProfileFollowerServer, pki.Request{CommonName: "f", DNSNames: []string{"f.example"}})
			if err != nil {
				t.Fatal(err)
			}
			verifyChain(t, crt, ca.Roots(), clock.Now(), x509.ExtKeyUsageServerAuth)

			err = ca.RotateIntermediate(ctx)
			if tc.wantRotate != (err == nil) {
				t.Fatalf("RotateIntermediate: %v (want success: %v)", err, tc.wantRotate)
			}
			if !tc.wantRotate && !errors.Is(err, pki.ErrNoRootKey) {
				t.Fatalf("RotateIntermediate: %v, want ErrNoRootKey", err)
			}
			reloaded, err := pki.Load(ctx, cfg, pki.WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			defer reloaded.Close()
			if reloaded.Pin() != tc.wantPin {
				t.Fatal("reloaded CA has another pin")
			}
			if _, err := pki.Import(ctx, cfg, tc.certPEM, tc.keyPEM, append([]pki.Option{pki.WithClock(clock)}, tc.opts...)...); !errors.Is(err, pki.ErrCAExists) {
				t.Fatalf("second import: %v", err)
			}
		})
	}
}

func TestRotateIntermediate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	before := f.issue(t, pki.ProfileEtcdPeer, pki.Request{CommonName: "m1", IPAddresses: ipList("10.0.0.1")})
	oldInter := f.ca.Chain()[0]
	pin := f.ca.Pin()
	if err := f.ca.RotateIntermediate(ctx); err != nil {
		t.Fatal(err)
	}
	if f.ca.Chain()[0].Equal(oldInter) || f.ca.Pin() != pin {
		t.Fatal("rotation must change the intermediate and keep the pin")
	}
	after := f.issue(t, pki.ProfileEtcdPeer, pki.Request{CommonName: "m1", IPAddresses: ipList("10.0.0.1")})
	if !after.Chain[1].Equal(f.ca.Chain()[0]) {
		t.Fatal("new certificates must carry the new intermediate")
	}
	for _, c := range []*pki.Issued{before, after} {
		verifyChain(t, c, f.ca.Roots(), f.clock.Now(), x509.ExtKeyUsageServerAuth)
	}
	standby, err := pki.Load(ctx, f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close()
	if !standby.Chain()[0].Equal(f.ca.Chain()[0]) {
		t.Fatal("a Standby loading after rotation must see the new intermediate")
	}
}

func TestKeyTypes(t *testing.T) {
	t.Parallel()
	for _, kt := range []pki.KeyType{pki.KeyECDSAP256, pki.KeyECDSAP384, pki.KeyEd25519, pki.KeyRSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, pki.WithKeyType(kt))
			crt := f.issue(t, pki.ProfileLeaderServer, pki.Request{CommonName: "l", DNSNames: []string{"l.example"}})
			verifyChain(t, crt, f.ca.Roots(), f.clock.Now(), x509.ExtKeyUsageServerAuth)
			if got := crt.Leaf().PublicKeyAlgorithm.String(); !strings.Contains(strings.ToLower(strings.ReplaceAll(string(kt), "-", "")), strings.ToLower(got)) {
				t.Fatalf("leaf key %s for key type %s", got, kt)
			}
			if _, err := crt.TLSCertificate(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := pki.ParseKeyType("dsa-1024"); err == nil {
		t.Fatal("parsed an unknown key type")
	}
	if kt, err := pki.ParseKeyType(" ECDSA-P384 "); err != nil || kt != pki.KeyECDSAP384 {
		t.Fatalf("ParseKeyType = %q, %v", kt, err)
	}
	if _, err := pki.Bootstrap(context.Background(), pki.Config{Store: pkitest.NewMemStore(), Sealer: mustKeyring(t)}, pki.WithKeyType("dsa")); err == nil {
		t.Fatal("bootstrapped with an unknown key type")
	}
}

func verifyChain(t testing.TB, c *pki.Issued, roots []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) {
	t.Helper()
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, i := range c.Chain[1:] {
		ip.AddCert(i)
	}
	if _, err := c.Leaf().Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("issued chain does not verify: %v", err)
	}
}
