package archive_test

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzUnpack from the current format")

// The fuzz target's world is fixed, so that the committed corpus stays
// valid: Ed25519 keys from fixed seeds (Ed25519 signatures are
// deterministic), fixed times, a fixed age identity.
const fuzzIdentity = "AGE-SECRET-KEY-17XYKR5W4HZAL3Q50WTQS62JF4GDJCTM8QS3DCPS4KWQ5ASTUFA6QGHZJ73"

var (
	fuzzIssued = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	fuzzNow    = fuzzIssued.Add(30 * time.Minute)
)

func fixedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func fuzzPKI(tb testing.TB) *testPKI {
	tb.Helper()
	nb := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	caKey, signKey, srvKey := fixedKey(1), fixedKey(2), fixedKey(3)
	caT := caTemplate("sower fuzz CA", nb)
	caT.SerialNumber = big.NewInt(1)
	ca := issue(tb, caT, nil, caKey.Public(), caKey)
	leafT := leafTemplate("seed signer", nb)
	leafT.SerialNumber = big.NewInt(2)
	leaf := issue(tb, leafT, ca, signKey.Public(), caKey)
	srvT := leafTemplate("conjur-follower", nb)
	srvT.SerialNumber = big.NewInt(3)
	srv := issue(tb, srvT, ca, srvKey.Public(), caKey)
	der, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &testPKI{
		ca: ca, caKey: caKey, pin: pki.PinOf(ca),
		signer:    archive.Signer{Key: signKey, Chain: []*x509.Certificate{leaf, ca}},
		serverPEM: srv.Raw,
		serverKey: der,
	}
}

func fuzzIdent(tb testing.TB) *age.X25519Identity {
	tb.Helper()
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// fuzzSeeds are the corpus: valid seeds and one of each kind of refusal.
func fuzzSeeds(tb testing.TB) map[string][]byte {
	p := fuzzPKI(tb)
	id := fuzzIdent(tb)
	plain := buildPlain(tb, p, testMetadata(p.pin, fuzzIssued), followerFiles(p))
	edit := func(fn func([]entry) []entry) []byte { return rewrite(tb, plain, fn) }
	add := func(e entry) []byte { return edit(func(es []entry) []entry { return append(es, e) }) }
	return map[string][]byte{
		"valid-plain":      plain,
		"valid-sealed":     seal(tb, id.Recipient(), plain),
		"valid-one-file":   buildPlain(tb, p, testMetadata(p.pin, fuzzIssued), []archive.File{{Path: "a", Data: []byte("x")}}),
		"traversal":        add(reg("files/../../evil", []byte("x"))),
		"absolute":         add(reg("/etc/passwd", []byte("x"))),
		"symlink":          add(special(tar.TypeSymlink, "files/link", "/etc/shadow")),
		"hardlink":         add(special(tar.TypeLink, "files/link", "files/data.key")),
		"device":           add(special(tar.TypeChar, "files/null", "")),
		"fifo":             add(special(tar.TypeFifo, "files/fifo", "")),
		"duplicate":        edit(func(es []entry) []entry { return append(es, es[len(es)-1]) }),
		"unlisted":         add(reg("files/extra", []byte("x"))),
		"missing":          edit(func(es []entry) []entry { return es[:len(es)-1] }),
		"swapped":          edit(func(es []entry) []entry { es[0], es[1] = es[1], es[0]; return es }),
		"tampered":         edit(func(es []entry) []entry { es[2].data = bytes.ToUpper(es[2].data); return es }),
		"truncated":        plain[:len(plain)/2],
		"sealed-truncated": seal(tb, id.Recipient(), plain)[:300],
	}
}

// TestFuzzCorpus keeps testdata/fuzz/FuzzUnpack in step with the format:
// with -update-corpus it rewrites it; without, it checks that the valid
// seeds in it still unpack, so the fuzzer starts from seeds that reach the
// deepest checks.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzUnpack")
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range fuzzSeeds(t) {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range []string{"valid-plain", "valid-sealed", "valid-one-file"} {
		t.Run(name, func(t *testing.T) {
			data := readCorpusFile(t, filepath.Join(dir, name))
			if err := unpackFuzz(t, data); err != nil {
				t.Fatalf("corpus seed %s no longer unpacks (run go test -run TestFuzzCorpus -update-corpus): %v", name, err)
			}
		})
	}
}

func readCorpusFile(t *testing.T, path string) []byte {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, lit, ok := strings.Cut(string(raw), "\n")
	lit = strings.TrimSpace(lit)
	if !ok || !strings.HasPrefix(lit, "[]byte(") || !strings.HasSuffix(lit, ")") {
		t.Fatalf("%s is not a fuzz corpus file", path)
	}
	var s string
	if _, err := fmt.Sscanf(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"), "%q", &s); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// unpackFuzz unpacks data into a fresh directory and checks the promises
// Unpack makes either way: a refusal wraps a package error and writes
// nothing; a success writes exactly the verified files.
func unpackFuzz(t *testing.T, data []byte) error {
	p := fuzzPKIOnce(t)
	parent := fuzzTempDir(t)
	dir := filepath.Join(parent, "seed")
	opts := []archive.Option{
		archive.WithClock(func() time.Time { return fuzzNow }),
		archive.WithLimits(archive.Limits{MaxArchiveSize: 1 << 20, MaxFileSize: 256 << 10, MaxFiles: 64}),
	}
	var (
		m   archive.Manifest
		err error
	)
	if bytes.HasPrefix(data, []byte("age-encryption.org/")) {
		m, err = archive.Unpack(bytes.NewReader(data), dir, p.pin, fuzzIdent(t), opts...)
	} else {
		m, err = archive.UnpackPlain(bytes.NewReader(data), dir, p.pin, opts...)
	}
	if err != nil {
		// The target is a fresh directory, so every failure is a refusal
		// of the input and must say which.
		if !strings.HasPrefix(err.Error(), "seed/archive: ") || !isSentinel(err) {
			t.Errorf("refusal %q does not wrap a seed/archive sentinel error", err)
		}
		assertNothingWritten(t, parent)
		return err
	}
	for _, f := range m.Files {
		got, rerr := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if rerr != nil || sha256.Sum256(got) != f.SHA256 {
			t.Errorf("unpacked %q does not match the manifest: %v", f.Path, rerr)
		}
		if mode := perm(t, filepath.Join(dir, filepath.FromSlash(f.Path))); mode&0o077 != 0 {
			t.Errorf("unpacked %q with mode %04o", f.Path, mode)
		}
	}
	return nil
}

var sentinels = []error{
	archive.ErrNoPin, archive.ErrNoIdentity, archive.ErrInvalidSeed, archive.ErrTargetNotSeed,
	archive.ErrNotSealed, archive.ErrWrongIdentity, archive.ErrCorrupt, archive.ErrTruncated,
	archive.ErrMalformed, archive.ErrTooLarge, archive.ErrUnsupported, archive.ErrAbsolutePath,
	archive.ErrPathTraversal, archive.ErrInvalidPath, archive.ErrLink, archive.ErrDevice,
	archive.ErrFIFO, archive.ErrEntryType, archive.ErrDuplicate, archive.ErrUnlisted,
	archive.ErrMissing, archive.ErrBadSignature, archive.ErrUntrusted, archive.ErrPinMismatch,
	archive.ErrHashMismatch, archive.ErrExpired, archive.ErrNotYetValid,
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

var fuzzPKICache *testPKI

func fuzzPKIOnce(tb testing.TB) *testPKI {
	if fuzzPKICache == nil {
		fuzzPKICache = fuzzPKI(tb)
	}
	return fuzzPKICache
}

// FuzzUnpack feeds Unpack (sealed input, by its age header) and UnpackPlain
// arbitrary bytes. The seed corpus is testdata/fuzz/FuzzUnpack.
func FuzzUnpack(f *testing.F) {
	fuzzPKIOnce(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = unpackFuzz(t, data) // it checks what it must
	})
}

// fuzzTempDir is a fresh directory, on tmpfs where there is one: a valid
// seed's unpack fsyncs every file, which on a disk would make the fuzzer
// spend its time waiting for it.
func fuzzTempDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "sower-fuzz-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}
