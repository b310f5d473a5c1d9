package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
)

// Limits bound what a reader accepts. Bytes are counted as they are read,
// so an archive that claims to be small but is not, or a tar whose headers
// promise more than they deliver, is stopped at the limit.
type Limits struct {
	// MaxArchiveSize bounds the whole tar stream (for a sealed seed, the
	// decrypted stream; the ciphertext is bounded by a little more).
	MaxArchiveSize int64
	// MaxFileSize bounds each entry.
	MaxFileSize int64
	// MaxFiles bounds the number of files.
	MaxFiles int
}

// The default limits. A Follower seed is about 10 KiB and a Standby seed
// not much more; these leave room for large CA bundles and nothing else.
const (
	DefaultMaxArchiveSize = 16 << 20
	DefaultMaxFileSize    = 4 << 20
	DefaultMaxFiles       = 256
	// DefaultClockSkew is how far in the future a seed's issued_at may lie,
	// for a node whose clock is a little behind the Leader's.
	DefaultClockSkew = 5 * time.Minute
)

// DefaultLimits returns the limits a reader uses unless told otherwise.
// The Builder refuses to make a seed these limits would refuse.
func DefaultLimits() Limits {
	return Limits{MaxArchiveSize: DefaultMaxArchiveSize, MaxFileSize: DefaultMaxFileSize, MaxFiles: DefaultMaxFiles}
}

// Option changes how a seed is opened.
type Option func(*options)

type options struct {
	now    func() time.Time
	limits Limits
	skew   time.Duration
}

// WithClock sets the clock expiry and certificates are checked against.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithLimits sets the size limits; a zero or negative field keeps its
// default.
func WithLimits(l Limits) Option {
	return func(o *options) {
		if l.MaxArchiveSize > 0 {
			o.limits.MaxArchiveSize = l.MaxArchiveSize
		}
		if l.MaxFileSize > 0 {
			o.limits.MaxFileSize = l.MaxFileSize
		}
		if l.MaxFiles > 0 {
			o.limits.MaxFiles = l.MaxFiles
		}
	}
}

// WithClockSkew sets how far in the future issued_at may be (default
// DefaultClockSkew). It never extends expires_at.
func WithClockSkew(d time.Duration) Option {
	return func(o *options) {
		if d >= 0 {
			o.skew = d
		}
	}
}

func newOptions(opts []Option) options {
	o := options{now: time.Now, limits: DefaultLimits(), skew: DefaultClockSkew}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Seed is a seed that has been verified: its signature chains to the pinned
// CA, it has not expired, and every file matched its hash. Only Open and
// OpenPlain make one, so holding a *Seed means all checks passed.
type Seed struct {
	manifest Manifest
	rawMan   []byte
	rawSig   []byte
	chain    []*x509.Certificate
	files    map[string][]byte
}

// Manifest returns the seed's verified manifest.
func (s *Seed) Manifest() Manifest { return s.manifest.clone() }

// ReadFile returns a copy of one file of the seed.
func (s *Seed) ReadFile(path string) ([]byte, bool) {
	b, ok := s.files[path]
	if !ok {
		return nil, false
	}
	return bytes.Clone(b), true
}

// SignerChain returns the verified chain that signed the seed, signer first.
func (s *Seed) SignerChain() []*x509.Certificate {
	return append([]*x509.Certificate(nil), s.chain...)
}

// Open decrypts a sealed seed with identity and verifies it against pin
// (see docs/seed-format.md for the order of the checks). Nothing is written
// anywhere; call WriteDir on the result, or use Unpack.
func Open(r io.Reader, pin pki.Pin, identity age.Identity, opts ...Option) (*Seed, error) {
	if pin == (pki.Pin{}) {
		return nil, ErrNoPin
	}
	if x, ok := identity.(*age.X25519Identity); identity == nil || ok && x == nil {
		return nil, ErrNoIdentity
	}
	o := newOptions(opts)
	// Bound the ciphertext too: age adds 16 bytes per 64 KiB chunk and a
	// short header.
	cr := &countingReader{r: r, max: o.limits.MaxArchiveSize + o.limits.MaxArchiveSize/1024 + 64<<10}
	br := bufio.NewReader(cr)
	const intro = "age-encryption.org/"
	head, err := br.Peek(len(intro))
	if string(head) != intro {
		switch {
		case len(head) < len(intro) && strings.HasPrefix(intro, string(head)) && errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: in the age header", ErrTruncated)
		case err != nil && !errors.Is(err, io.EOF):
			return nil, err
		}
		return nil, ErrNotSealed
	}
	plain, err := age.Decrypt(br, identity)
	if err != nil {
		var noMatch *age.NoIdentityMatchError
		var re *readError
		switch {
		case errors.As(err, &re):
			return nil, re
		case errors.As(err, &noMatch):
			return nil, ErrWrongIdentity
		case passThrough(err):
			return nil, err
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: in the age header", ErrTruncated)
		}
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return read(&sealedReader{r: plain}, pin, o)
}

// OpenPlain verifies a plain (unsealed) seed against pin. Use it only where
// the seed service is configured to hand out plain seeds.
func OpenPlain(r io.Reader, pin pki.Pin, opts ...Option) (*Seed, error) {
	if pin == (pki.Pin{}) {
		return nil, ErrNoPin
	}
	return read(r, pin, newOptions(opts))
}

// countingReader fails with ErrTooLarge once more than max bytes have been
// read, whatever the archive's headers claim.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		// Only an error if there is more to read.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, c.max)
		}
		return 0, err
	}
	if rem := c.max - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// readError is a failure of the reader the seed comes from (a network
// error, say): it is reported as such, not as a fault of the seed.
type readError struct{ err error }

func (e *readError) Error() string { return "seed/archive: read seed: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// passThrough reports whether err already says what went wrong.
func passThrough(err error) bool {
	var re *readError
	return errors.As(err, &re) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupt)
}

// sealedReader turns age's stream errors into this package's errors.
type sealedReader struct{ r io.Reader }

func (s *sealedReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	switch {
	case err == nil, err == io.EOF, passThrough(err):
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: the encrypted stream stops mid-chunk", ErrTruncated)
	default:
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return n, err
}

// read reads and verifies the tar stream. The manifest and its signature
// come first, and are verified before any file is read, so that every later
// size is one the cluster signed.
func read(r io.Reader, pin pki.Pin, o options) (*Seed, error) {
	lim := o.limits
	cr := &countingReader{r: r, max: lim.MaxArchiveSize}
	tr := tar.NewReader(cr)
	s := &Seed{}
	var listed map[string]FileEntry
	seen := make(map[string]bool)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		// With GODEBUG=tarinsecurepath=0 the tar reader flags unsafe names
		// itself; checkEntry says more precisely what is wrong.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return nil, tarError(err, n)
		}
		if n >= lim.MaxFiles+2 {
			return nil, fmt.Errorf("%w: more than %d files", ErrTooLarge, lim.MaxFiles)
		}
		if err := checkEntry(hdr); err != nil {
			return nil, err
		}
		name := hdr.Name
		if seen[name] {
			return nil, fmt.Errorf("%w %q", ErrDuplicate, name)
		}
		seen[name] = true
		switch n {
		case 0:
			if name != manifestName {
				return nil, fmt.Errorf("%w: the first entry is %q, a seed starts with %s", ErrMalformed, name, manifestName)
			}
			if s.rawMan, err = readEntry(tr, hdr, min(lim.MaxFileSize, maxManifestSize)); err != nil {
				return nil, err
			}
			format, err := peekFormat(s.rawMan)
			if err != nil {
				return nil, err
			}
			if format != Format {
				return nil, fmt.Errorf("%w: %q (this node reads %q)", ErrUnsupported, format, Format)
			}
		case 1:
			if name != signatureName {
				return nil, fmt.Errorf("%w: the second entry is %q, want %s", ErrMalformed, name, signatureName)
			}
			if s.rawSig, err = readEntry(tr, hdr, min(lim.MaxFileSize, maxSignatureSize)); err != nil {
				return nil, err
			}
			if err := s.verify(pin, o); err != nil {
				return nil, err
			}
			listed = make(map[string]FileEntry, len(s.manifest.Files))
			var sum int64
			for _, f := range s.manifest.Files {
				listed[f.Path] = f
				if f.Size > lim.MaxFileSize {
					return nil, fmt.Errorf("%w: file %q is %d bytes, at most %d", ErrTooLarge, f.Path, f.Size, lim.MaxFileSize)
				}
				sum += f.Size
			}
			if len(listed) > lim.MaxFiles {
				return nil, fmt.Errorf("%w: %d files, at most %d", ErrTooLarge, len(listed), lim.MaxFiles)
			}
			if sum > lim.MaxArchiveSize {
				return nil, fmt.Errorf("%w: %d bytes of files, at most %d", ErrTooLarge, sum, lim.MaxArchiveSize)
			}
			s.files = make(map[string][]byte, len(listed))
		default:
			path, ok := strings.CutPrefix(name, filesPrefix)
			if !ok {
				return nil, fmt.Errorf("%w: %q", ErrUnlisted, name)
			}
			want, ok := listed[path]
			if !ok {
				return nil, fmt.Errorf("%w: %q", ErrUnlisted, name)
			}
			if hdr.Size != want.Size {
				return nil, fmt.Errorf("%w: %q is %d bytes, the manifest says %d", ErrHashMismatch, path, hdr.Size, want.Size)
			}
			data, err := readEntry(tr, hdr, lim.MaxFileSize)
			if err != nil {
				return nil, err
			}
			if got := sha256.Sum256(data); subtle.ConstantTimeCompare(got[:], want.SHA256[:]) != 1 {
				return nil, fmt.Errorf("%w: %q", ErrHashMismatch, path)
			}
			s.files[path] = data
		}
	}
	if s.rawMan == nil || s.rawSig == nil {
		return nil, fmt.Errorf("%w: no %s and %s", ErrTruncated, manifestName, signatureName)
	}
	for _, f := range s.manifest.Files {
		if _, ok := s.files[f.Path]; !ok {
			return nil, fmt.Errorf("%w: %q", ErrMissing, f.Path)
		}
	}
	if err := drain(cr); err != nil {
		return nil, err
	}
	return s, nil
}

// drain reads what follows the end of the tar: only the zero padding tar
// writers add may follow. Through age this also checks the final chunk, so
// a sealed stream cut after the tar is still caught.
func drain(r io.Reader) error {
	buf := make([]byte, 4<<10)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return fmt.Errorf("%w: data after the end of the archive", ErrMalformed)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return tarError(err, -1)
		}
	}
}

// verify checks manifest.sig, then the manifest's own claims.
func (s *Seed) verify(pin pki.Pin, o options) error {
	now := o.now()
	chain, err := verifySignature(s.rawMan, s.rawSig, pin, now)
	if err != nil {
		return err
	}
	m, err := parseManifest(s.rawMan)
	if err != nil {
		return err
	}
	if m.CAPin != pin {
		return fmt.Errorf("%w: the manifest names CA pin %s", ErrPinMismatch, m.CAPin)
	}
	if !now.Before(m.ExpiresAt) {
		return fmt.Errorf("%w: seed %q expired at %s", ErrExpired, m.SeedID, m.ExpiresAt.Format(time.RFC3339))
	}
	if m.IssuedAt.After(now.Add(o.skew)) {
		return fmt.Errorf("%w: seed %q is issued at %s, the time here is %s", ErrNotYetValid, m.SeedID,
			m.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	s.manifest, s.chain = m, chain
	return nil
}

// checkEntry refuses entries by type and name before anything else is
// looked at, so a hostile entry is reported for what it is wherever it
// appears.
func checkEntry(hdr *tar.Header) error {
	name := hdr.Name
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeSymlink, tar.TypeLink:
		return fmt.Errorf("%w: %q -> %q", ErrLink, name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: %q", ErrDevice, name)
	case tar.TypeFifo:
		return fmt.Errorf("%w: %q", ErrFIFO, name)
	default:
		return fmt.Errorf("%w: %q has tar type %q", ErrEntryType, name, hdr.Typeflag)
	}
	for k := range hdr.PAXRecords {
		// A sparse entry expands holes on read: bytes that were never
		// counted on the wire.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("%w: %q is a sparse file", ErrEntryType, name)
		}
	}
	if err := checkPath(name); err != nil {
		return err
	}
	return nil
}

// readEntry reads one entry whose declared size is checked first, so that
// no buffer is sized by an unchecked header.
func readEntry(tr *tar.Reader, hdr *tar.Header, max int64) ([]byte, error) {
	if hdr.Size > max {
		return nil, fmt.Errorf("%w: %q is %d bytes, at most %d", ErrTooLarge, hdr.Name, hdr.Size, max)
	}
	buf := make([]byte, hdr.Size)
	if _, err := io.ReadFull(tr, buf); err != nil {
		return nil, tarError(err, -1)
	}
	return buf, nil
}

func tarError(err error, n int) error {
	switch {
	case passThrough(err):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	case errors.Is(err, tar.ErrHeader):
		if n == 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return fmt.Errorf("%w: entry %d: %v", ErrMalformed, n+1, err)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}
