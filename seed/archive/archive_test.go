package archive_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/seed/archive"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		key    keyKind
		shape  chainShape
		sealed bool
	}{
		"p256 leaf sealed":            {key: keyP256, shape: shapeLeaf, sealed: true},
		"p256 leaf plain":             {key: keyP256, shape: shapeLeaf},
		"p384 intermediate sealed":    {key: keyP384, shape: shapeIntermediate, sealed: true},
		"p521 CA signs sealed":        {key: keyP521, shape: shapeCASigns, sealed: true},
		"ed25519 pinned intermediate": {key: keyEd25519, shape: shapePinInter, sealed: true},
		"rsa leaf plain":              {key: keyRSA, shape: shapeLeaf},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := newPKI(t, tc.key, tc.shape)
			issued := time.Now().Add(-time.Minute)
			md := testMetadata(p.pin, issued)
			files := followerFiles(p)
			id := newIdentity(t)

			var buf bytes.Buffer
			var built archive.Manifest
			var err error
			if tc.sealed {
				built, err = p.builder(t).Seal(&buf, id.Recipient(), md, files)
			} else {
				built, err = p.builder(t).WritePlain(&buf, md, files)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.sealed && bytes.Contains(buf.Bytes(), p.serverKey) {
				t.Fatal("sealed seed holds the server key in the clear")
			}

			dir := filepath.Join(t.TempDir(), "seed")
			var got archive.Manifest
			if tc.sealed {
				got, err = archive.Unpack(&buf, dir, p.pin, id)
			} else {
				got, err = archive.UnpackPlain(&buf, dir, p.pin)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, built) {
				t.Errorf("manifest read back:\n%+v\nbuilt:\n%+v", got, built)
			}
			if got.Format != archive.Format || got.SeedID != md.SeedID || got.CAPin != p.pin ||
				!got.IssuedAt.Equal(issued.Truncate(time.Second)) || len(got.Files) != len(files) {
				t.Errorf("manifest %+v does not describe the seed built from %+v", got, md)
			}
			for _, f := range files {
				path := filepath.Join(dir, filepath.FromSlash(f.Path))
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(data, f.Data) {
					t.Errorf("%s: contents differ", f.Path)
				}
				want := fs.FileMode(0o600)
				if f.Mode == 0o400 {
					want = 0o400
				}
				if got := perm(t, path); got != want {
					t.Errorf("%s: mode %04o, want %04o", f.Path, got, want)
				}
				if got := perm(t, filepath.Dir(path)); got != 0o700 {
					t.Errorf("%s: directory mode %04o, want 0700", f.Path, got)
				}
			}
			for _, name := range []string{"manifest.json", "manifest.sig"} {
				if _, err := os.Stat(filepath.Join(dir, ".sower-seed", name)); err != nil {
					t.Errorf("marker: %v", err)
				}
			}
		})
	}
}

// TestRefusals feeds Unpack archives that must be refused, and checks that
// each is refused with its error and that nothing was written.
func TestRefusals(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	other := newPKI(t, keyP256, shapeLeaf)
	id := newIdentity(t)
	now := time.Now()
	md := testMetadata(p.pin, now.Add(-time.Minute))
	plain := buildPlain(t, p, md, followerFiles(p))
	sealed := seal(t, id.Recipient(), plain)

	edit := func(fn func([]entry) []entry) []byte { return rewrite(t, plain, fn) }
	find := func(es []entry, name string) int {
		for i, e := range es {
			if e.hdr.Name == name {
				return i
			}
		}
		t.Fatalf("no entry %q", name)
		return -1
	}
	appendEntry := func(e entry) []byte {
		return edit(func(es []entry) []entry { return append(es, e) })
	}

	tests := map[string]struct {
		archive []byte
		sealed  bool
		pin     pki.Pin // zero: p.pin
		ident   age.Identity
		opts    []archive.Option
		want    error
	}{
		"tampered file bytes": {
			archive: edit(func(es []entry) []entry {
				i := find(es, "files/tls/server.key")
				es[i].data = bytes.Clone(es[i].data)
				es[i].data[40] ^= 1
				return es
			}),
			want: archive.ErrHashMismatch,
		},
		"tampered file size": {
			archive: edit(func(es []entry) []entry {
				i := find(es, "files/data.key")
				es[i].data = append(bytes.Clone(es[i].data), 0)
				return es
			}),
			want: archive.ErrHashMismatch,
		},
		"tampered manifest": {
			archive: edit(func(es []entry) []entry {
				es[0].data = bytes.Replace(es[0].data, []byte("follower-0"), []byte("follower-1"), 1)
				return es
			}),
			want: archive.ErrBadSignature,
		},
		"tampered manifest hash": {
			archive: edit(func(es []entry) []entry {
				var m map[string]any
				if err := json.Unmarshal(es[0].data, &m); err != nil {
					t.Fatal(err)
				}
				f := m["files"].([]any)[0].(map[string]any)
				es[0].data = bytes.Replace(es[0].data, []byte(f["sha256"].(string)), []byte(strings.Repeat("0", 64)), 1)
				return es
			}),
			want: archive.ErrBadSignature,
		},
		"tampered signature": {
			archive: edit(func(es []entry) []entry {
				var s map[string]any
				if err := json.Unmarshal(es[1].data, &s); err != nil {
					t.Fatal(err)
				}
				sig := []byte(s["signature"].(string))
				sig[10] = map[bool]byte{true: 'A', false: 'B'}[sig[10] != 'A']
				s["signature"] = string(sig)
				es[1].data, _ = json.Marshal(s)
				return es
			}),
			want: archive.ErrBadSignature,
		},
		"signature algorithm does not fit the key": {
			archive: edit(func(es []entry) []entry {
				es[1].data = bytes.Replace(es[1].data, []byte(`"ECDSA-SHA256"`), []byte(`"ECDSA-SHA384"`), 1)
				return es
			}),
			want: archive.ErrBadSignature,
		},
		"signed by another cluster": {
			archive: buildPlain(t, other, testMetadata(other.pin, now.Add(-time.Minute)), followerFiles(other)),
			want:    archive.ErrPinMismatch,
		},
		"wrong pin": {
			archive: plain,
			pin:     other.pin,
			want:    archive.ErrPinMismatch,
		},
		"signer not issued by the pinned CA": {
			// The pinned CA certificate is in the chain, but the signer was
			// issued by another CA.
			archive: resign(t, plain, archive.Signer{Key: other.signer.Key, Chain: []*x509.Certificate{other.signer.Chain[0], p.ca}}, func(map[string]any) {}),
			want:    archive.ErrUntrusted,
		},
		"manifest names another pin": {
			archive: resign(t, plain, p.signer, func(m map[string]any) { m["ca_pin"] = other.pin.String() }),
			want:    archive.ErrPinMismatch,
		},
		"expired seed": {
			archive: plain,
			opts:    []archive.Option{archive.WithClock(func() time.Time { return now.Add(2 * time.Hour) })},
			want:    archive.ErrExpired,
		},
		"expires exactly now": {
			archive: plain,
			opts:    []archive.Option{archive.WithClock(func() time.Time { return md.ExpiresAt.Truncate(time.Second) })},
			want:    archive.ErrExpired,
		},
		"issued in the future": {
			archive: plain,
			opts:    []archive.Option{archive.WithClock(func() time.Time { return now.Add(-30 * time.Minute) })},
			want:    archive.ErrNotYetValid,
		},
		"issued ahead, no skew allowed": {
			archive: plain,
			opts: []archive.Option{
				archive.WithClock(func() time.Time { return now.Add(-2 * time.Minute) }),
				archive.WithClockSkew(0),
			},
			want: archive.ErrNotYetValid,
		},
		"unknown format version": {
			archive: resign(t, plain, p.signer, func(m map[string]any) { m["format"] = "sower-seed/v2" }),
			want:    archive.ErrUnsupported,
		},
		"unknown manifest field": {
			archive: resign(t, plain, p.signer, func(m map[string]any) { m["admin"] = true }),
			want:    archive.ErrInvalidSeed,
		},
		"manifest lists a traversal path": {
			archive: resign(t, plain, p.signer, func(m map[string]any) {
				m["files"].([]any)[0].(map[string]any)["path"] = "../../etc/cron.d/x"
			}),
			want: archive.ErrPathTraversal,
		},
		"path traversal entry": {
			archive: appendEntry(reg("files/../../../etc/cron.d/evil", []byte("* * * * * root sh"))),
			want:    archive.ErrPathTraversal,
		},
		"path traversal entry first": {
			archive: edit(func(es []entry) []entry { return append([]entry{reg("../evil", []byte("x"))}, es...) }),
			want:    archive.ErrPathTraversal,
		},
		"absolute path entry": {
			archive: appendEntry(reg("/etc/passwd", []byte("root::0:0::/:/bin/sh"))),
			want:    archive.ErrAbsolutePath,
		},
		"unclean path entry": {
			archive: appendEntry(reg("files/./tls//server.key", []byte("x"))),
			want:    archive.ErrInvalidPath,
		},
		"symlink entry": {
			archive: appendEntry(special(tar.TypeSymlink, "files/ca/link", "/etc/shadow")),
			want:    archive.ErrLink,
		},
		"hard link entry": {
			archive: appendEntry(special(tar.TypeLink, "files/tls/hard", "files/tls/server.key")),
			want:    archive.ErrLink,
		},
		"character device entry": {
			archive: appendEntry(special(tar.TypeChar, "files/null", "")),
			want:    archive.ErrDevice,
		},
		"block device entry": {
			archive: appendEntry(special(tar.TypeBlock, "files/sda", "")),
			want:    archive.ErrDevice,
		},
		"FIFO entry": {
			archive: appendEntry(special(tar.TypeFifo, "files/pipe", "")),
			want:    archive.ErrFIFO,
		},
		"directory entry": {
			archive: appendEntry(special(tar.TypeDir, "files/tls/", "")),
			want:    archive.ErrEntryType,
		},
		"duplicate entry": {
			archive: edit(func(es []entry) []entry { return append(es, es[find(es, "files/data.key")]) }),
			want:    archive.ErrDuplicate,
		},
		"duplicate manifest": {
			archive: edit(func(es []entry) []entry { return append(es, es[0]) }),
			want:    archive.ErrDuplicate,
		},
		"unlisted entry": {
			archive: appendEntry(reg("files/extra.pem", []byte("surprise"))),
			want:    archive.ErrUnlisted,
		},
		"unlisted entry outside files/": {
			archive: appendEntry(reg("README", []byte("surprise"))),
			want:    archive.ErrUnlisted,
		},
		"listed file missing": {
			archive: edit(func(es []entry) []entry {
				i := find(es, "files/data.key")
				return append(es[:i], es[i+1:]...)
			}),
			want: archive.ErrMissing,
		},
		"manifest not first": {
			archive: edit(func(es []entry) []entry { es[0], es[1] = es[1], es[0]; return es }),
			want:    archive.ErrMalformed,
		},
		"signature missing": {
			archive: edit(func(es []entry) []entry { return es[:1] }),
			want:    archive.ErrTruncated,
		},
		"truncated plain archive": {
			archive: plain[:len(plain)/2],
			want:    archive.ErrTruncated,
		},
		"empty plain archive": {
			archive: nil,
			want:    archive.ErrTruncated,
		},
		"data after the end of the tar": {
			archive: append(bytes.Clone(plain), []byte("trailing")...),
			want:    archive.ErrMalformed,
		},
		"not a tar": {
			archive: bytes.Repeat([]byte("not a seed "), 100),
			want:    archive.ErrMalformed,
		},
		"oversized archive": {
			archive: plain,
			opts:    []archive.Option{archive.WithLimits(archive.Limits{MaxArchiveSize: 4 << 10})},
			want:    archive.ErrTooLarge,
		},
		"oversized entry": {
			archive: plain,
			opts:    []archive.Option{archive.WithLimits(archive.Limits{MaxFileSize: 256})},
			want:    archive.ErrTooLarge,
		},
		"too many files": {
			archive: plain,
			opts:    []archive.Option{archive.WithLimits(archive.Limits{MaxFiles: 3})},
			want:    archive.ErrTooLarge,
		},
		"header claims a huge entry": {
			archive: hugeHeader(t),
			want:    archive.ErrTooLarge,
		},
		"endless stream": {
			archive: nil, // replaced below by an endless reader
			want:    archive.ErrTooLarge,
		},
		"sealed: wrong age identity": {
			archive: sealed,
			sealed:  true,
			ident:   newIdentity(t),
			want:    archive.ErrWrongIdentity,
		},
		"sealed: truncated": {
			archive: sealed[:len(sealed)/2],
			sealed:  true,
			want:    archive.ErrCorrupt,
		},
		"sealed: truncated in the header": {
			archive: sealed[:10],
			sealed:  true,
			want:    archive.ErrTruncated,
		},
		"sealed: tampered ciphertext": {
			archive: func() []byte { b := bytes.Clone(sealed); b[len(b)-20] ^= 1; return b }(),
			sealed:  true,
			want:    archive.ErrCorrupt,
		},
		"sealed: a plain seed": {
			archive: plain,
			sealed:  true,
			want:    archive.ErrNotSealed,
		},
		"sealed: tampered file inside": {
			archive: seal(t, id.Recipient(), edit(func(es []entry) []entry {
				i := find(es, "files/data.key")
				es[i].data = bytes.Repeat([]byte{0}, 32)
				return es
			})),
			sealed: true,
			want:   archive.ErrHashMismatch,
		},
		"sealed: oversized": {
			archive: sealed,
			sealed:  true,
			opts:    []archive.Option{archive.WithLimits(archive.Limits{MaxArchiveSize: 4 << 10})},
			want:    archive.ErrTooLarge,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pin := tc.pin
			if pin == (pki.Pin{}) {
				pin = p.pin
			}
			ident := tc.ident
			if ident == nil {
				ident = id
			}
			var r io.Reader = bytes.NewReader(tc.archive)
			if name == "endless stream" {
				// Tar writers may pad the end with zeros; endless zeros must
				// still stop at the limit.
				r = io.MultiReader(bytes.NewReader(plain), zeros{})
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "seed")
			var err error
			if tc.sealed {
				_, err = archive.Unpack(r, dir, pin, ident, tc.opts...)
			} else {
				_, err = archive.UnpackPlain(r, dir, pin, tc.opts...)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "seed/archive: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			assertNothingWritten(t, parent)
		})
	}
}

// hugeHeader is a tar whose first header promises a terabyte: a reader that
// trusted it would allocate before noticing.
func hugeHeader(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "manifest.json", Mode: 0o600, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	buf.Write(bytes.Repeat([]byte("{}"), 4096))
	return buf.Bytes()
}

func TestOpenArguments(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	plain := buildPlain(t, p, testMetadata(p.pin, time.Now()), followerFiles(p))
	tests := map[string]struct {
		open func() error
		want error
	}{
		"no pin": {
			open: func() error { _, err := archive.OpenPlain(bytes.NewReader(plain), pki.Pin{}); return err },
			want: archive.ErrNoPin,
		},
		"no identity": {
			open: func() error { _, err := archive.Open(bytes.NewReader(plain), p.pin, nil); return err },
			want: archive.ErrNoIdentity,
		},
		"nil seed": {
			open: func() error { var s *archive.Seed; return s.WriteDir(t.TempDir()) },
			want: archive.ErrInvalidSeed,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if err := tc.open(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenReturnsVerifiedSeed(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeIntermediate)
	id := newIdentity(t)
	files := followerFiles(p)
	sealed := buildSealed(t, p, id.Recipient(), testMetadata(p.pin, time.Now()), files)
	s, err := archive.Open(bytes.NewReader(sealed), p.pin, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, ok := s.ReadFile(f.Path)
		if !ok || !bytes.Equal(got, f.Data) {
			t.Errorf("ReadFile(%q) = %q, %v", f.Path, got, ok)
		}
	}
	if _, ok := s.ReadFile("nope"); ok {
		t.Error("ReadFile of an unknown path succeeded")
	}
	chain := s.SignerChain()
	if len(chain) != 3 || !chain[0].Equal(p.signer.Chain[0]) {
		t.Errorf("SignerChain = %d certificates, want the signer's 3", len(chain))
	}
	// Changing what the seed returns does not change the seed.
	m := s.Manifest()
	m.Files[0].Path = "changed"
	m.Hostnames[0] = "changed"
	if again := s.Manifest(); again.Files[0].Path == "changed" || again.Hostnames[0] == "changed" {
		t.Error("Manifest returned shared slices")
	}
	e, ok := s.Manifest().File("data.key")
	if !ok || e.Size != 32 || e.SHA256 != sha256.Sum256(bytes.Repeat([]byte{0x5a}, 32)) {
		t.Errorf("Manifest().File(data.key) = %+v, %v", e, ok)
	}
}

func TestBuilderRefusals(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	other := newPKI(t, keyP256, shapeLeaf)
	id := newIdentity(t)
	now := time.Now()
	noSigUsage := func() archive.Signer {
		key := newKey(t, keyP256)
		tmpl := leafTemplate("no signing", now.Add(-time.Hour))
		tmpl.KeyUsage = x509.KeyUsageKeyEncipherment
		c := issue(t, tmpl, p.ca, key.Public(), p.caKey)
		return archive.Signer{Key: key, Chain: []*x509.Certificate{c, p.ca}}
	}
	withMD := func(fn func(*archive.Metadata)) archive.Metadata {
		md := testMetadata(p.pin, now)
		fn(&md)
		return md
	}
	tests := map[string]struct {
		signer    archive.Signer
		md        archive.Metadata
		files     []archive.File
		recipient age.Recipient
		want      error
	}{
		"no key":                 {signer: archive.Signer{Chain: p.signer.Chain}, want: archive.ErrNoSigner},
		"no chain":               {signer: archive.Signer{Key: p.signer.Key}, want: archive.ErrNoSigner},
		"key does not fit":       {signer: archive.Signer{Key: other.signer.Key, Chain: p.signer.Chain}, want: archive.ErrSignerKey},
		"chain without CA":       {signer: archive.Signer{Key: p.signer.Key, Chain: p.signer.Chain[:1]}, want: archive.ErrUntrusted},
		"chain to another CA":    {signer: archive.Signer{Key: p.signer.Key, Chain: []*x509.Certificate{p.signer.Chain[0], other.ca}}, want: archive.ErrUntrusted},
		"no digitalSignature":    {signer: noSigUsage(), want: archive.ErrUntrusted},
		"no recipient":           {recipient: nil, want: archive.ErrNoRecipient},
		"pin of another CA":      {md: testMetadata(other.pin, now), want: archive.ErrPinMismatch},
		"no seed id":             {md: withMD(func(m *archive.Metadata) { m.SeedID = "" }), want: archive.ErrInvalidSeed},
		"bad kind":               {md: withMD(func(m *archive.Metadata) { m.Kind = "leader" }), want: archive.ErrInvalidSeed},
		"no leader endpoint":     {md: withMD(func(m *archive.Metadata) { m.Endpoints.Leader = nil }), want: archive.ErrInvalidSeed},
		"control character":      {md: withMD(func(m *archive.Metadata) { m.Account = "my\norg" }), want: archive.ErrInvalidSeed},
		"expires before issued":  {md: withMD(func(m *archive.Metadata) { m.ExpiresAt = m.IssuedAt }), want: archive.ErrInvalidSeed},
		"absolute file path":     {files: []archive.File{{Path: "/etc/x", Data: []byte("x")}}, want: archive.ErrAbsolutePath},
		"traversal file path":    {files: []archive.File{{Path: "a/../../x", Data: []byte("x")}}, want: archive.ErrPathTraversal},
		"reserved file path":     {files: []archive.File{{Path: ".sower-seed/manifest.json", Data: []byte("x")}}, want: archive.ErrInvalidPath},
		"duplicate file":         {files: []archive.File{{Path: "a", Data: []byte("x")}, {Path: "a", Data: []byte("y")}}, want: archive.ErrDuplicate},
		"file is also directory": {files: []archive.File{{Path: "a", Data: []byte("x")}, {Path: "a/b", Data: []byte("y")}}, want: archive.ErrInvalidSeed},
		"setuid mode":            {files: []archive.File{{Path: "a", Mode: fs.ModeSetuid | 0o755, Data: []byte("x")}}, want: archive.ErrInvalidSeed},
		"unreadable mode":        {files: []archive.File{{Path: "a", Mode: 0o200, Data: []byte("x")}}, want: archive.ErrInvalidSeed},
		"file too large":         {files: []archive.File{{Path: "big", Data: make([]byte, archive.DefaultMaxFileSize+1)}}, want: archive.ErrTooLarge},
		"archive too large": {
			files: func() []archive.File {
				var fs []archive.File
				for i := range 5 {
					fs = append(fs, archive.File{Path: "big" + string(rune('a'+i)), Data: make([]byte, archive.DefaultMaxFileSize)})
				}
				return fs
			}(),
			want: archive.ErrTooLarge,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			signer := tc.signer
			if signer.Key == nil && signer.Chain == nil {
				signer = p.signer
			}
			md := tc.md
			if md.SeedID == "" && md.Kind == "" {
				md = testMetadata(p.pin, now)
			}
			files := tc.files
			if files == nil {
				files = followerFiles(p)
			}
			recipient := tc.recipient
			if recipient == nil && tc.want != archive.ErrNoRecipient {
				recipient = id.Recipient()
			}
			var buf bytes.Buffer
			b, err := archive.NewBuilder(signer)
			if err == nil {
				_, err = b.Seal(&buf, recipient, md, files)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("a refused seed wrote %d bytes", buf.Len())
			}
		})
	}
}

func TestParseRecipient(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	tests := map[string]struct {
		in   string
		want error
	}{
		"x25519":       {in: id.Recipient().String()},
		"with newline": {in: id.Recipient().String() + "\n"},
		"identity":     {in: id.String(), want: archive.ErrBadRecipient},
		"ssh key":      {in: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN", want: archive.ErrBadRecipient},
		"empty":        {in: "", want: archive.ErrBadRecipient},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := archive.ParseRecipient(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && r.String() != id.Recipient().String() {
				t.Errorf("parsed %s, want %s", r, id.Recipient())
			}
		})
	}
}

// TestManifestIsDocumented checks the manifest against the field list of
// docs/seed-format.md, so that the document and the code cannot drift.
func TestManifestIsDocumented(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	plain := buildPlain(t, p, testMetadata(p.pin, time.Now()), followerFiles(p))
	es := readEntries(t, plain)
	var names []string
	for _, e := range es {
		names = append(names, e.hdr.Name)
	}
	want := []string{"manifest.json", "manifest.sig", "files/ca/bundle.pem", "files/data.key",
		"files/replication/client.crt", "files/replication/client.key", "files/tls/server.crt", "files/tls/server.key"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(es[0].data, &m); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/seed-format.md")
	if err != nil {
		t.Fatal(err)
	}
	for k := range m {
		if !bytes.Contains(doc, []byte("`"+k+"`")) {
			t.Errorf("manifest field %q is not in docs/seed-format.md", k)
		}
	}
	var sig map[string]json.RawMessage
	if err := json.Unmarshal(es[1].data, &sig); err != nil {
		t.Fatal(err)
	}
	for k := range sig {
		if !bytes.Contains(doc, []byte("`"+k+"`")) {
			t.Errorf("signature field %q is not in docs/seed-format.md", k)
		}
	}
	if !bytes.Contains(doc, []byte(archive.Format)) {
		t.Errorf("docs/seed-format.md does not name %q", archive.Format)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A reader that fails (a dropped connection) is reported as a read error,
// not blamed on the seed.
func TestReadErrorIsNotABadSeed(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	id := newIdentity(t)
	plain := buildPlain(t, p, testMetadata(p.pin, time.Now()), followerFiles(p))
	sealed := seal(t, id.Recipient(), plain)
	errReset := errors.New("connection reset by peer")
	tests := map[string]struct {
		open func(r io.Reader) error
		data []byte
	}{
		"plain": {
			open: func(r io.Reader) error { _, err := archive.OpenPlain(r, p.pin); return err },
			data: plain,
		},
		"sealed": {
			open: func(r io.Reader) error { _, err := archive.Open(r, p.pin, id); return err },
			data: sealed,
		},
		"sealed, in the header": {
			open: func(r io.Reader) error { _, err := archive.Open(r, p.pin, id); return err },
			data: sealed[:40],
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := io.MultiReader(bytes.NewReader(tc.data[:len(tc.data)/2]), iotestErr{errReset})
			err := tc.open(r)
			if !errors.Is(err, errReset) || isSentinel(err) {
				t.Fatalf("got %v, want the reader's error and no seed error", err)
			}
			if !strings.HasPrefix(err.Error(), "seed/archive: read seed: ") {
				t.Errorf("error %q does not say the read failed", err)
			}
		})
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// TestManifestWithDuplicateKeysIsRefused: a signed manifest holding a key
// twice (which JSON readers disagree about: encoding/json keeps the last
// value) is refused as malformed, naming the key.
func TestManifestWithDuplicateKeysIsRefused(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	plain := buildPlain(t, p, testMetadata(p.pin, time.Now().Add(-time.Minute)), followerFiles(p))
	tests := map[string]struct {
		edit func([]byte) []byte
		key  string
	}{
		"top level": {func(m []byte) []byte { return bytes.Replace(m, []byte("{"), []byte(`{"account":"other",`), 1) }, "account"},
		"nested":    {func(m []byte) []byte { return bytes.Replace(m, []byte(`"path":`), []byte(`"mode":"0600","path":`), 1) }, "mode"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bad := rewrite(t, plain, func(es []entry) []entry {
				es[0].data = tc.edit(bytes.Clone(es[0].data))
				es[1].data = signDoc(t, p.signer, es[0].data)
				return es
			})
			_, err := archive.OpenPlain(bytes.NewReader(bad), p.pin)
			if !errors.Is(err, archive.ErrMalformed) || !strings.Contains(err.Error(), `duplicate key "`+tc.key+`"`) {
				t.Fatalf("OpenPlain = %v, want ErrMalformed naming the duplicate key %q", err, tc.key)
			}
		})
	}
}
