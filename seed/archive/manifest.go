package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sowerproject/sower/pki"
)

// Format is the version string every manifest carries. A reader refuses any
// other value: a change to the layout, the manifest fields or the signature
// scheme gets a new version, so an old node never misreads a new seed.
const Format = "sower-seed/v1"

// Kind says which node a seed is for.
type Kind string

// The seed kinds. A Standby seed carries more (CA keys, an etcd peer
// certificate, an enrollment token); the format is the same.
const (
	KindFollower Kind = "follower"
	KindStandby  Kind = "standby"
)

// Node names the node a seed was issued to.
type Node struct {
	// Name is the node's name in the cluster (a pod or host name).
	Name string
	// Role is the Conjur role id the node acts as, for example
	// "myorg:host:conjur/cluster/production/standby-1". Optional.
	Role string
}

// Endpoints are where the node finds the rest of the cluster, as URLs.
type Endpoints struct {
	Leader   []string
	Standbys []string
}

// Metadata describes a seed: who it is for and how long it is good for.
type Metadata struct {
	SeedID    string
	Kind      Kind
	Account   string
	Cluster   string
	Node      Node
	Hostnames []string // the names the node's server certificate carries
	Endpoints Endpoints
	CAPin     pki.Pin
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// FileEntry is one file as the manifest lists it.
type FileEntry struct {
	Path   string      // slash-separated, relative to the unpack directory
	Mode   fs.FileMode // permission bits only
	Size   int64
	SHA256 [sha256.Size]byte
}

// Manifest is the signed table of contents of a seed: its metadata and every
// file it holds.
type Manifest struct {
	Format string
	Metadata
	Files []FileEntry
}

// File is one file to put into a seed.
type File struct {
	Path string      // slash-separated relative path, e.g. "tls/server.key"
	Mode fs.FileMode // permission bits; zero means 0600
	Data []byte
}

const (
	manifestName  = "manifest.json"
	signatureName = "manifest.sig"
	filesPrefix   = "files/"
	// markerDir is the directory an unpacked seed keeps its manifest and
	// signature in; no seed file may live under it.
	markerDir = ".sower-seed"

	maxManifestSize  = 1 << 20
	maxSignatureSize = 64 << 10
	maxPathLen       = 1024
	maxElemLen       = 255
	maxFieldLen      = 1024
	defaultFileMode  = fs.FileMode(0o600)
)

// The manifest on the wire. Kept apart from the exported types so that the
// JSON spelling is written down in one place and docs/seed-format.md can
// describe it field by field.
type wireManifest struct {
	Format    string        `json:"format"`
	SeedID    string        `json:"seed_id"`
	Kind      Kind          `json:"kind"`
	Account   string        `json:"account"`
	Cluster   string        `json:"cluster"`
	Node      wireNode      `json:"node"`
	Hostnames []string      `json:"hostnames"`
	Endpoints wireEndpoints `json:"endpoints"`
	CAPin     string        `json:"ca_pin"`
	IssuedAt  time.Time     `json:"issued_at"`
	ExpiresAt time.Time     `json:"expires_at"`
	Files     []wireFile    `json:"files"`
}

type wireNode struct {
	Name string `json:"name"`
	Role string `json:"role,omitempty"`
}

type wireEndpoints struct {
	Leader   []string `json:"leader"`
	Standbys []string `json:"standbys"`
}

type wireFile struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (m *Manifest) marshal() ([]byte, error) {
	w := wireManifest{
		Format:    m.Format,
		SeedID:    m.SeedID,
		Kind:      m.Kind,
		Account:   m.Account,
		Cluster:   m.Cluster,
		Node:      wireNode{Name: m.Node.Name, Role: m.Node.Role},
		Hostnames: nonNil(m.Hostnames),
		Endpoints: wireEndpoints{Leader: nonNil(m.Endpoints.Leader), Standbys: nonNil(m.Endpoints.Standbys)},
		CAPin:     m.CAPin.String(),
		IssuedAt:  m.IssuedAt,
		ExpiresAt: m.ExpiresAt,
		Files:     make([]wireFile, len(m.Files)),
	}
	for i, f := range m.Files {
		w.Files[i] = wireFile{
			Path:   f.Path,
			Mode:   fmt.Sprintf("%04o", uint32(f.Mode.Perm())),
			Size:   f.Size,
			SHA256: hex.EncodeToString(f.SHA256[:]),
		}
	}
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("seed/archive: encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// peekFormat reads only the format field, so that a seed from a newer
// version is reported as such rather than as a bad signature.
func peekFormat(raw []byte) (string, error) {
	var v struct {
		Format string `json:"format"`
	}
	if err := noDuplicateKeys(raw); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrMalformed, manifestName, err)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("%w: %s is not JSON: %w", ErrMalformed, manifestName, err)
	}
	return v.Format, nil
}

// decodeStrict decodes one JSON value, refusing unknown fields and trailing
// data: a v1 manifest means exactly what docs/seed-format.md says.
func decodeStrict(raw []byte, v any) error {
	if err := noDuplicateKeys(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// noDuplicateKeys refuses JSON with an object holding one key twice.
// encoding/json keeps the last value, another reader may keep the first, so
// a manifest with a duplicate key could mean two things.
func noDuplicateKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				key, _ := kt.(string)
				if seen[key] {
					return fmt.Errorf("duplicate key %q in %s", key, path)
				}
				seen[key] = true
				if err := walk(path + "." + key); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	return walk("the manifest")
}

// parseManifest decodes a manifest whose signature has been verified.
func parseManifest(raw []byte) (Manifest, error) {
	var w wireManifest
	if err := decodeStrict(raw, &w); err != nil {
		return Manifest{}, fmt.Errorf("%w: decode %s: %w", ErrInvalidSeed, manifestName, err)
	}
	if w.Format != Format {
		return Manifest{}, fmt.Errorf("%w: %q (this node reads %q)", ErrUnsupported, w.Format, Format)
	}
	pin, err := pki.ParsePin(w.CAPin)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: ca_pin: %w", ErrInvalidSeed, err)
	}
	m := Manifest{
		Format: w.Format,
		Metadata: Metadata{
			SeedID:    w.SeedID,
			Kind:      w.Kind,
			Account:   w.Account,
			Cluster:   w.Cluster,
			Node:      Node{Name: w.Node.Name, Role: w.Node.Role},
			Hostnames: w.Hostnames,
			Endpoints: Endpoints{Leader: w.Endpoints.Leader, Standbys: w.Endpoints.Standbys},
			CAPin:     pin,
			IssuedAt:  w.IssuedAt,
			ExpiresAt: w.ExpiresAt,
		},
		Files: make([]FileEntry, len(w.Files)),
	}
	for i, f := range w.Files {
		mode, err := parseMode(f.Mode)
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: file %q: %w", ErrInvalidSeed, f.Path, err)
		}
		sum, err := hex.DecodeString(f.SHA256)
		if err != nil || len(sum) != sha256.Size || f.SHA256 != strings.ToLower(f.SHA256) {
			return Manifest{}, fmt.Errorf("%w: file %q: sha256 must be %d lower-case hex digits", ErrInvalidSeed, f.Path, 2*sha256.Size)
		}
		m.Files[i] = FileEntry{Path: f.Path, Mode: mode, Size: f.Size}
		copy(m.Files[i].SHA256[:], sum)
	}
	if err := m.Metadata.validate(); err != nil {
		return Manifest{}, err
	}
	if err := validateFiles(m.Files); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// parseMode reads "0600": four octal digits, permission bits only.
func parseMode(s string) (fs.FileMode, error) {
	if len(s) != 4 || s[0] != '0' {
		return 0, fmt.Errorf("mode %q must be four octal digits such as \"0600\"", s)
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("mode %q must be four octal digits such as \"0600\"", s)
	}
	return checkMode(fs.FileMode(v))
}

func checkMode(m fs.FileMode) (fs.FileMode, error) {
	if m&^fs.ModePerm != 0 {
		return 0, fmt.Errorf("mode %v has bits other than permissions", m)
	}
	if m&0o400 == 0 {
		return 0, fmt.Errorf("mode %04o does not let the owner read the file", uint32(m))
	}
	return m, nil
}

func checkField(name, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%w: %s is required", ErrInvalidSeed, name)
		}
		return nil
	}
	if len(v) > maxFieldLen || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: %s must be printable UTF-8 of at most %d bytes", ErrInvalidSeed, name, maxFieldLen)
	}
	return nil
}

func checkList(name string, vs []string, required bool) error {
	if required && len(vs) == 0 {
		return fmt.Errorf("%w: at least one %s is required", ErrInvalidSeed, name)
	}
	if len(vs) > 256 {
		return fmt.Errorf("%w: more than 256 %s", ErrInvalidSeed, name)
	}
	for _, v := range vs {
		if err := checkField(name, v, true); err != nil {
			return err
		}
	}
	return nil
}

func (md *Metadata) validate() error {
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"seed_id", md.SeedID, true},
		{"account", md.Account, true},
		{"cluster", md.Cluster, true},
		{"node.name", md.Node.Name, true},
		{"node.role", md.Node.Role, false},
	} {
		if err := checkField(f.name, f.v, f.required); err != nil {
			return err
		}
	}
	if md.Kind != KindFollower && md.Kind != KindStandby {
		return fmt.Errorf("%w: kind %q must be %q or %q", ErrInvalidSeed, md.Kind, KindFollower, KindStandby)
	}
	if err := checkList("hostname", md.Hostnames, false); err != nil {
		return err
	}
	if err := checkList("leader endpoint", md.Endpoints.Leader, true); err != nil {
		return err
	}
	if err := checkList("standby endpoint", md.Endpoints.Standbys, false); err != nil {
		return err
	}
	if md.CAPin == (pki.Pin{}) {
		return fmt.Errorf("%w: ca_pin is required", ErrInvalidSeed)
	}
	if md.IssuedAt.IsZero() || md.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: issued_at and expires_at are required", ErrInvalidSeed)
	}
	if !md.ExpiresAt.After(md.IssuedAt) {
		return fmt.Errorf("%w: expires_at %s is not after issued_at %s", ErrInvalidSeed,
			md.ExpiresAt.Format(time.RFC3339), md.IssuedAt.Format(time.RFC3339))
	}
	return nil
}

// checkPath applies the path rules to a slash-separated path, be it a tar
// entry name or a manifest path.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty", ErrInvalidPath)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w %q", ErrAbsolutePath, p)
	case len(p) > maxPathLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidPath, maxPathLen)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("%w: %q", ErrPathTraversal, p)
		}
	}
	if !fs.ValidPath(p) || strings.ContainsAny(p, "\\:") || !utf8.ValidString(p) ||
		strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w %q: use clean relative slash-separated paths without \".\", empty elements, backslashes, colons or control characters", ErrInvalidPath, p)
	}
	for _, el := range strings.Split(p, "/") {
		if len(el) > maxElemLen {
			return fmt.Errorf("%w %q: element longer than %d bytes", ErrInvalidPath, p, maxElemLen)
		}
	}
	return nil
}

// checkFilePath is checkPath plus the rule that keeps seed files out of the
// directory an unpacked seed keeps its own manifest in.
func checkFilePath(p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if p == markerDir || strings.HasPrefix(p, markerDir+"/") {
		return fmt.Errorf("%w %q: %s/ is reserved", ErrInvalidPath, p, markerDir)
	}
	return nil
}

// validateFiles checks the file list of a manifest: valid unique paths, no
// file that is also another file's directory, sane modes and sizes.
func validateFiles(files []FileEntry) error {
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		// The path rules' own errors say enough; they are the same a tar
		// entry gets.
		if err := checkFilePath(f.Path); err != nil {
			return fmt.Errorf("%w (a file of the manifest)", err)
		}
		if seen[f.Path] {
			return fmt.Errorf("%w %q in the manifest", ErrDuplicate, f.Path)
		}
		seen[f.Path] = true
		if _, err := checkMode(f.Mode); err != nil {
			return fmt.Errorf("%w: file %q: %w", ErrInvalidSeed, f.Path, err)
		}
		if f.Size < 0 {
			return fmt.Errorf("%w: file %q: negative size", ErrInvalidSeed, f.Path)
		}
	}
	for _, f := range files {
		for dir := f.Path; ; {
			i := strings.LastIndexByte(dir, '/')
			if i < 0 {
				break
			}
			dir = dir[:i]
			if seen[dir] {
				return fmt.Errorf("%w: %q is both a file and the directory of %q", ErrInvalidSeed, dir, f.Path)
			}
		}
	}
	return nil
}

// clone returns a deep copy, so that a caller cannot change a verified seed.
func (m Manifest) clone() Manifest {
	m.Hostnames = append([]string(nil), m.Hostnames...)
	m.Endpoints.Leader = append([]string(nil), m.Endpoints.Leader...)
	m.Endpoints.Standbys = append([]string(nil), m.Endpoints.Standbys...)
	m.Files = append([]FileEntry(nil), m.Files...)
	return m
}

// File returns the manifest entry for path.
func (m Manifest) File(path string) (FileEntry, bool) {
	for _, f := range m.Files {
		if f.Path == path {
			return f, true
		}
	}
	return FileEntry{}, false
}
