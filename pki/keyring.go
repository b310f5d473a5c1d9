package pki

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// DataKeySize is the size of a data key: 256 bits, for AES-256-GCM.
const DataKeySize = 32

// Sealed value layout (all integers big-endian):
//
//	0      2        6        14       26
//	| "S1" | version | key id | nonce  | AES-256-GCM ciphertext and tag |
//
// The header up to the key id and the caller's AAD (the etcd key path) are
// authenticated, so a value moved to another key path, or relabelled with
// another key version, fails to open. The key id (8 bytes of an HMAC of the
// key) tells "another cluster's key with the same version number" apart from
// "right key, wrong path or tampered", so each failure says which.
const (
	sealedMagic  = "S1"
	keyIDLen     = 8
	nonceLen     = 12
	sealedAADLen = len(sealedMagic) + 4 + keyIDLen
	sealedHdrLen = sealedAADLen + nonceLen
	gcmTagLen    = 16
	// SealOverhead is how many bytes Seal adds to a plaintext.
	SealOverhead = sealedHdrLen + gcmTagLen
)

const keyringHeader = "sower-data-keyring v1"

// Keyring holds the versions of the cluster's data key. Seal always uses the
// newest version (the primary); Open uses whichever version a value names, so
// values sealed before a rotation keep opening until Rewrap has re-sealed
// them and the old version is retired. A Keyring is safe for concurrent use.
type Keyring struct {
	mu      sync.RWMutex
	keys    map[uint32]*dataKey
	primary uint32
}

type dataKey struct {
	version uint32
	secret  []byte
	id      [keyIDLen]byte
	aead    cipher.AEAD
}

func newDataKey(version uint32, secret []byte) (*dataKey, error) {
	if len(secret) != DataKeySize {
		return nil, fmt.Errorf("%w: key version %d has %d bytes, want %d", ErrMalformedKeyring, version, len(secret), DataKeySize)
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("pki: data key version %d: %w", version, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pki: data key version %d: %w", version, err)
	}
	dk := &dataKey{version: version, secret: slices.Clone(secret), aead: aead}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("sower data key id v1"))
	copy(dk.id[:], mac.Sum(nil))
	return dk, nil
}

// GenerateKeyring returns a keyring holding one new random key, version 1.
func GenerateKeyring() (*Keyring, error) {
	k := &Keyring{keys: map[uint32]*dataKey{}}
	if _, err := k.Rotate(); err != nil {
		return nil, err
	}
	return k, nil
}

// Rotate adds a new random key version and makes it the primary, which new
// Seals use. Older versions stay and keep opening their values: run Rewrap,
// then Retire them.
func (k *Keyring) Rotate() (uint32, error) {
	secret := make([]byte, DataKeySize)
	if _, err := rand.Read(secret); err != nil {
		return 0, fmt.Errorf("pki: generate data key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = map[uint32]*dataKey{}
	}
	v := k.primary + 1
	if v == 0 {
		return 0, errors.New("pki: data key versions exhausted")
	}
	dk, err := newDataKey(v, secret)
	if err != nil {
		return 0, err
	}
	k.keys[v] = dk
	k.primary = v
	return v, nil
}

// Retire removes an old key version once nothing is sealed under it any
// more. The primary cannot be retired.
func (k *Keyring) Retire(version uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if version == k.primary {
		return fmt.Errorf("pki: cannot retire data key version %d: it is the primary (rotate first)", version)
	}
	if _, ok := k.keys[version]; !ok {
		return fmt.Errorf("pki: cannot retire data key version %d: not in the keyring", version)
	}
	delete(k.keys, version)
	return nil
}

// Merge adds the versions of other that k lacks; this is how a node learns a
// version rotated in on another node. A version present in both with
// different key material is refused.
func (k *Keyring) Merge(other *Keyring) error {
	other.mu.RLock()
	theirs := maps.Clone(other.keys)
	other.mu.RUnlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = map[uint32]*dataKey{}
	}
	for v, dk := range theirs {
		if mine, ok := k.keys[v]; ok {
			if subtle.ConstantTimeCompare(mine.secret, dk.secret) != 1 {
				return fmt.Errorf("%w: data key version %d differs between the two keyrings", ErrWrongDataKey, v)
			}
			continue
		}
		k.keys[v] = dk
		k.primary = max(k.primary, v)
	}
	return nil
}

// Primary is the version new values are sealed under.
func (k *Keyring) Primary() uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.primary
}

// Versions lists the key versions held, oldest first.
func (k *Keyring) Versions() []uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return slices.Sorted(maps.Keys(k.keys))
}

// String never shows key material, so a keyring that ends up in a log line
// leaks nothing.
func (k *Keyring) String() string {
	return fmt.Sprintf("pki.Keyring{primary: %d, versions: %v}", k.Primary(), k.Versions())
}

// GoString is String, for %#v.
func (k *Keyring) GoString() string { return k.String() }

// Seal encrypts plaintext under the primary key with AES-256-GCM. aad must be
// the etcd key path the value will be stored under: Open with any other path
// fails.
func (k *Keyring) Seal(aad string, plaintext []byte) ([]byte, error) {
	if aad == "" {
		return nil, errors.New("pki: seal needs the value's key path as additional data")
	}
	k.mu.RLock()
	dk := k.keys[k.primary]
	k.mu.RUnlock()
	if dk == nil {
		return nil, errors.New("pki: the keyring holds no data key")
	}
	out := make([]byte, sealedHdrLen, sealedHdrLen+len(plaintext)+gcmTagLen)
	copy(out, sealedMagic)
	binary.BigEndian.PutUint32(out[len(sealedMagic):], dk.version)
	copy(out[len(sealedMagic)+4:], dk.id[:])
	nonce := out[sealedAADLen:sealedHdrLen]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("pki: seal: %w", err)
	}
	return dk.aead.Seal(out, nonce, plaintext, sealedAD(out, aad)), nil
}

// Open decrypts a value made by Seal with the same aad. It never returns
// unauthenticated bytes: a wrong key, another key path or a modified value is
// an error that says which of these it is.
func (k *Keyring) Open(aad string, sealed []byte) ([]byte, error) {
	version, err := SealedKeyVersion(sealed)
	if err != nil {
		return nil, fmt.Errorf("open %q: %w", aad, err)
	}
	if len(sealed) < SealOverhead {
		return nil, fmt.Errorf("open %q: %w", aad, ErrMalformedSealed)
	}
	k.mu.RLock()
	dk := k.keys[version]
	k.mu.RUnlock()
	if dk == nil {
		return nil, fmt.Errorf("open %q: %w: version %d, this node has %v (copy the current data key file from the Leader)",
			aad, ErrUnknownKeyVersion, version, k.Versions())
	}
	if subtle.ConstantTimeCompare(dk.id[:], sealed[len(sealedMagic)+4:sealedAADLen]) != 1 {
		return nil, fmt.Errorf("open %q: %w: this node's data key version %d is not the one the value was sealed with (is the data key file from another cluster?)",
			aad, ErrWrongDataKey, version)
	}
	plain, err := dk.aead.Open(nil, sealed[sealedAADLen:sealedHdrLen], sealed[sealedHdrLen:], sealedAD(sealed, aad))
	if err != nil {
		return nil, fmt.Errorf("open %q: %w: it was sealed for another key path, or modified", aad, ErrOpen)
	}
	return plain, nil
}

func sealedAD(header []byte, aad string) []byte {
	ad := make([]byte, 0, sealedAADLen+len(aad))
	ad = append(ad, header[:sealedAADLen]...)
	return append(ad, aad...)
}

// SealedKeyVersion returns the data key version a sealed value names.
func SealedKeyVersion(sealed []byte) (uint32, error) {
	if len(sealed) < sealedHdrLen || string(sealed[:len(sealedMagic)]) != sealedMagic {
		return 0, ErrMalformedSealed
	}
	return binary.BigEndian.Uint32(sealed[len(sealedMagic):]), nil
}

// Marshal renders the keyring in the data key file format. The result is
// secret: it goes to a 0600 file or, sealed, into a seed.
func (k *Keyring) Marshal() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var b bytes.Buffer
	b.WriteString(keyringHeader + "\n")
	b.WriteString("# sower data key: keep secret, mode 0600. One line per version: <version> <base64 key>.\n")
	for _, v := range slices.Sorted(maps.Keys(k.keys)) {
		fmt.Fprintf(&b, "%d %s\n", v, base64.StdEncoding.EncodeToString(k.keys[v].secret))
	}
	return b.Bytes()
}

// ParseKeyring parses the data key file format written by Marshal. Errors
// name a line number, never its content.
func ParseKeyring(data []byte) (*Keyring, error) {
	k := &Keyring{keys: map[uint32]*dataKey{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sawHeader := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !sawHeader {
			if line != keyringHeader {
				return nil, fmt.Errorf("%w: line %d: want the header %q", ErrMalformedKeyring, n, keyringHeader)
			}
			sawHeader = true
			continue
		}
		vs, ks, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: want \"<version> <base64 key>\"", ErrMalformedKeyring, n)
		}
		v, err := strconv.ParseUint(vs, 10, 32)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("%w: line %d: version must be a positive number", ErrMalformedKeyring, n)
		}
		if _, dup := k.keys[uint32(v)]; dup {
			return nil, fmt.Errorf("%w: line %d: version %d appears twice", ErrMalformedKeyring, n, v)
		}
		secret, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(ks))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: key is not valid base64", ErrMalformedKeyring, n)
		}
		dk, err := newDataKey(uint32(v), secret)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		k.keys[dk.version] = dk
		k.primary = max(k.primary, dk.version)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedKeyring, err)
	}
	if len(k.keys) == 0 {
		return nil, fmt.Errorf("%w: no key in the file", ErrMalformedKeyring)
	}
	return k, nil
}

// LoadKeyring reads a data key file. A file that group or others can read is
// refused: the data key opens every secret of the cluster.
func LoadKeyring(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: open data key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: data key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("pki: data key file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o; run `chmod 600 %s` (and check who may have read it)", ErrKeyFilePermissions, path, perm, path)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("pki: read data key file %s: %w", path, err)
	}
	k, err := ParseKeyring(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("data key file %s: %w", path, err)
	}
	return k, nil
}

// WriteFile replaces the data key file at path atomically with mode 0600.
// Use it after Rotate, Merge or Retire.
func (k *Keyring) WriteFile(path string) error {
	tmp, err := k.writeTemp(path)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pki: write data key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// CreateFile writes the data key file at path only if nothing is there: the
// file at path may be the only copy of a cluster's data key, so bootstrap
// never overwrites it.
func (k *Keyring) CreateFile(path string) error {
	tmp, err := k.writeTemp(path)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pki: data key file %s already exists; refusing to overwrite it (it may be the only copy of the data key): %w", path, err)
		}
		return fmt.Errorf("pki: create data key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func (k *Keyring) writeTemp(path string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".datakey-*")
	if err != nil {
		return "", fmt.Errorf("pki: write data key file: %w", err)
	}
	name := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(k.Marshal())
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("pki: write data key file: %w", err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("pki: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("pki: sync %s: %w", dir, err)
	}
	return nil
}
