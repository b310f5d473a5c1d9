package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
)

// Builder packs and signs seeds. Make one per signing key with NewBuilder
// and share it: it holds no per-seed state and is safe for concurrent use.
type Builder struct {
	signer *preparedSigner
	// tarBuffers stage a seed's tar before sealing (Seal).
	tarBuffers sync.Pool
}

// NewBuilder checks the signer (the key fits the first certificate, the
// chain verifies up to a CA certificate at its end) and returns a Builder.
func NewBuilder(s Signer) (*Builder, error) {
	p, err := prepareSigner(s)
	if err != nil {
		return nil, err
	}
	return &Builder{signer: p}, nil
}

// ParseRecipient parses the age X25519 recipient ("age1...") a requester
// sends. Seal takes any age.Recipient; this is the one the seed service
// accepts from the network.
func ParseRecipient(s string) (*age.X25519Recipient, error) {
	r, err := age.ParseX25519Recipient(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecipient, err)
	}
	return r, nil
}

// Seal writes a seed encrypted to recipient, as an age file, into w: the
// seed is never in the clear outside this process. It returns the manifest
// it signed.
func (b *Builder) Seal(w io.Writer, recipient age.Recipient, md Metadata, files []File) (Manifest, error) {
	if x, ok := recipient.(*age.X25519Recipient); recipient == nil || ok && x == nil {
		return Manifest{}, ErrNoRecipient
	}
	m, manifest, sig, err := b.prepare(md, files)
	if err != nil {
		return Manifest{}, err
	}
	// The tar is staged, then sealed from the staging buffer straight into
	// w (seal.go). The staging buffer is reused across seeds and wiped
	// before it is put back, as it held the seed in the clear.
	tb, _ := b.tarBuffers.Get().(*bytes.Buffer)
	if tb == nil {
		tb = new(bytes.Buffer)
	}
	defer func() {
		clear(tb.Bytes()[:tb.Cap()])
		tb.Reset()
		b.tarBuffers.Put(tb)
	}()
	if err := writeTar(tb, m, manifest, sig, files); err != nil {
		return Manifest{}, err
	}
	if err := seal(w, recipient, tb.Bytes()); err != nil {
		return Manifest{}, fmt.Errorf("seed/archive: seal seed %q: %w", md.SeedID, err)
	}
	return m.clone(), nil
}

// seal encrypts plaintext to recipient as an age file. Recipients with
// labels (which age checks across recipients) go through age.Encrypt.
func seal(w io.Writer, recipient age.Recipient, plaintext []byte) error {
	if _, labelled := recipient.(age.RecipientWithLabels); !labelled {
		return sealAge(w, recipient, plaintext)
	}
	enc, err := age.Encrypt(w, recipient)
	if err != nil {
		return err
	}
	if _, err := enc.Write(plaintext); err != nil {
		return err
	}
	return enc.Close()
}

// WritePlain writes the seed as a plain, unencrypted tar. It is for the one
// case where a client cannot open a sealed seed (Conjur's seed-fetcher); the
// seed service offers it only where its configuration allows it, because the
// archive holds private keys in the clear.
func (b *Builder) WritePlain(w io.Writer, md Metadata, files []File) (Manifest, error) {
	m, manifest, sig, err := b.prepare(md, files)
	if err != nil {
		return Manifest{}, err
	}
	if err := writeTar(w, m, manifest, sig, files); err != nil {
		return Manifest{}, err
	}
	return m.clone(), nil
}

// prepare validates the inputs, builds the manifest and signs it. Files are
// listed in path order so that the same inputs give the same manifest.
func (b *Builder) prepare(md Metadata, files []File) (Manifest, []byte, []byte, error) {
	md.IssuedAt = md.IssuedAt.UTC().Truncate(time.Second)
	md.ExpiresAt = md.ExpiresAt.UTC().Truncate(time.Second)
	md.Hostnames = slices.Clone(md.Hostnames)
	md.Endpoints.Leader = slices.Clone(md.Endpoints.Leader)
	md.Endpoints.Standbys = slices.Clone(md.Endpoints.Standbys)
	if err := md.validate(); err != nil {
		return Manifest{}, nil, nil, fmt.Errorf("build seed: %w", err)
	}
	if !slices.Contains(b.signer.pins, md.CAPin) {
		return Manifest{}, nil, nil, fmt.Errorf("build seed %q: %w: no CA certificate of the signer chain has the metadata's pin %s", md.SeedID, ErrPinMismatch, md.CAPin)
	}
	lim := DefaultLimits()
	if len(files) > lim.MaxFiles {
		return Manifest{}, nil, nil, fmt.Errorf("build seed %q: %w: %d files, at most %d", md.SeedID, ErrTooLarge, len(files), lim.MaxFiles)
	}
	m := Manifest{Format: Format, Metadata: md, Files: make([]FileEntry, 0, len(files))}
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = defaultFileMode
		}
		size := int64(len(f.Data))
		if size > lim.MaxFileSize {
			return Manifest{}, nil, nil, fmt.Errorf("build seed %q: file %q: %w: %d bytes, at most %d", md.SeedID, f.Path, ErrTooLarge, size, lim.MaxFileSize)
		}
		m.Files = append(m.Files, FileEntry{Path: f.Path, Mode: mode, Size: size, SHA256: sha256.Sum256(f.Data)})
	}
	slices.SortFunc(m.Files, func(a, b FileEntry) int { return strings.Compare(a.Path, b.Path) })
	if err := validateFiles(m.Files); err != nil {
		return Manifest{}, nil, nil, fmt.Errorf("build seed %q: %w", md.SeedID, err)
	}
	manifest, err := m.marshal()
	if err != nil {
		return Manifest{}, nil, nil, err
	}
	sig, err := b.signer.sign(manifest)
	if err != nil {
		return Manifest{}, nil, nil, err
	}
	// Refuse here what a reader with the default limits would refuse, so
	// that the service never hands out a seed no node can open.
	if n := tarSize(m, len(manifest), len(sig)); n > lim.MaxArchiveSize {
		return Manifest{}, nil, nil, fmt.Errorf("build seed %q: %w: about %d bytes, at most %d", md.SeedID, ErrTooLarge, n, lim.MaxArchiveSize)
	}
	return m, manifest, sig, nil
}

// writeTar writes the layout docs/seed-format.md describes: manifest.json,
// manifest.sig, then files/<path> in manifest order.
func writeTar(w io.Writer, m Manifest, manifest, sig []byte, files []File) error {
	byPath := make(map[string][]byte, len(files))
	for _, f := range files {
		byPath[f.Path] = f.Data
	}
	tw := tar.NewWriter(w)
	put := func(name string, mode int64, data []byte) error {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Mode:     mode,
			Size:     int64(len(data)),
			ModTime:  m.IssuedAt,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err := put(manifestName, 0o600, manifest)
	if err == nil {
		err = put(signatureName, 0o600, sig)
	}
	for _, f := range m.Files {
		if err != nil {
			break
		}
		err = put(filesPrefix+f.Path, int64(f.Mode.Perm()), byPath[f.Path])
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return fmt.Errorf("seed/archive: write seed %q: %w", m.SeedID, err)
	}
	return nil
}

// tarSize estimates the size of the tar writeTar produces: a header block per
// entry (three more for a pax header when a name is long), the data padded
// to blocks, and the two blocks that end the archive.
func tarSize(m Manifest, manifestLen, sigLen int) int64 {
	entry := func(name string, size int64) int64 {
		n := int64(blockSize) + (size+blockSize-1)/blockSize*blockSize
		if len(name) > 100 {
			n += 3 * blockSize
		}
		return n
	}
	n := entry(manifestName, int64(manifestLen)) + entry(signatureName, int64(sigLen)) + 2*blockSize
	for _, f := range m.Files {
		n += entry(filesPrefix+f.Path, f.Size)
	}
	return n
}

const blockSize = 512
