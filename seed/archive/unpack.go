package archive

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"filippo.io/age"

	"github.com/sowerproject/sower/pki"
)

// Unpack opens a sealed seed (Open) and writes it into dir (WriteDir). It
// returns the verified manifest. Nothing is written unless every check
// passes, and a failed write leaves nothing behind.
func Unpack(r io.Reader, dir string, pin pki.Pin, identity age.Identity, opts ...Option) (Manifest, error) {
	s, err := Open(r, pin, identity, opts...)
	if err != nil {
		return Manifest{}, err
	}
	if err := s.WriteDir(dir); err != nil {
		return Manifest{}, err
	}
	return s.Manifest(), nil
}

// UnpackPlain is Unpack for a plain (unsealed) seed.
func UnpackPlain(r io.Reader, dir string, pin pki.Pin, opts ...Option) (Manifest, error) {
	s, err := OpenPlain(r, pin, opts...)
	if err != nil {
		return Manifest{}, err
	}
	if err := s.WriteDir(dir); err != nil {
		return Manifest{}, err
	}
	return s.Manifest(), nil
}

// WriteDir writes the seed's files into dir, files 0600 (the manifest's mode
// less any group and other bits) and directories 0700, with the manifest and
// its signature in dir/.sower-seed/.
//
// The seed is staged in a temporary directory beside dir, synced, and
// renamed into place, so dir holds either the whole seed or what it held
// before. dir must not be a mount point (use a directory inside the
// volume). If dir already holds this seed, WriteDir does nothing; if it holds
// another seed, or is empty, it is replaced; any other existing dir is
// refused with ErrTargetNotSeed.
func (s *Seed) WriteDir(dir string) (err error) {
	if s == nil || s.rawMan == nil {
		return fmt.Errorf("%w: no verified seed to write", ErrInvalidSeed)
	}
	if dir == "" {
		return fmt.Errorf("seed/archive: an unpack directory is required")
	}
	dir = filepath.Clean(dir)
	removeLeftovers(filepath.Dir(dir), filepath.Base(dir))
	state, err := s.inspect(dir)
	if err != nil {
		return err
	}
	if state == targetCurrent {
		return nil
	}
	parent, base := filepath.Dir(dir), filepath.Base(dir)

	created, err := mkdirParents(parent)
	if err != nil {
		return fmt.Errorf("seed/archive: create %q: %w", parent, err)
	}
	staging, err := os.MkdirTemp(parent, "."+base+".staging-")
	if err != nil {
		if created != "" {
			os.RemoveAll(created)
		}
		return fmt.Errorf("seed/archive: stage seed beside %q: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
			if created != "" {
				os.RemoveAll(created)
			}
		}
	}()
	if err := s.stage(staging); err != nil {
		return fmt.Errorf("seed/archive: stage seed in %q: %w", staging, err)
	}

	switch state {
	case targetAbsent, targetEmpty:
		// rename(2) replaces an empty directory atomically.
		if err := rename(staging, dir); err != nil {
			return fmt.Errorf("seed/archive: move seed into %q: %w (if it is a mount point, unpack into a directory inside it)", dir, err)
		}
	case targetOtherSeed:
		old, err := os.MkdirTemp(parent, "."+base+".old-")
		if err != nil {
			return fmt.Errorf("seed/archive: set the previous seed in %q aside: %w", dir, err)
		}
		if err := rename(dir, old); err != nil {
			os.Remove(old)
			return fmt.Errorf("seed/archive: set the previous seed in %q aside: %w (if it is a mount point, unpack into a directory inside it)", dir, err)
		}
		if err := rename(staging, dir); err != nil {
			if err2 := rename(old, dir); err2 != nil {
				return fmt.Errorf("seed/archive: move seed into %q: %w; the previous seed is left in %q", dir, err, old)
			}
			return fmt.Errorf("seed/archive: move seed into %q: %w", dir, err)
		}
		if err := syncDir(parent); err != nil {
			return fmt.Errorf("seed/archive: sync %q: %w", parent, err)
		}
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("seed/archive: the new seed is in %q, but removing the previous one from %q failed (remove it by hand): %w", dir, old, err)
		}
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("seed/archive: sync %q: %w", parent, err)
	}
	return nil
}

type targetState int

const (
	targetAbsent targetState = iota
	targetEmpty
	targetCurrent   // holds exactly this seed
	targetOtherSeed // holds another seed, or a damaged copy of this one
)

// inspect finds out what dir holds now.
func (s *Seed) inspect(dir string) (targetState, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return targetAbsent, nil
	}
	if err != nil {
		return 0, fmt.Errorf("seed/archive: inspect %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%w: %q is not a directory", ErrTargetNotSeed, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("seed/archive: inspect %q: %w", dir, err)
	}
	if len(entries) == 0 {
		return targetEmpty, nil
	}
	marker, err := readSmallFile(filepath.Join(dir, markerDir, manifestName), maxManifestSize)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %q has files and no %s/%s", ErrTargetNotSeed, dir, markerDir, manifestName)
	}
	if err != nil || !bytes.Equal(marker, s.rawMan) {
		return targetOtherSeed, nil
	}
	for _, f := range s.manifest.Files {
		if !sameFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f) {
			return targetOtherSeed, nil
		}
	}
	return targetCurrent, nil
}

// readSmallFile reads a regular file (not through a link) of at most max
// bytes.
func readSmallFile(path string, max int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%q is not a regular file of at most %d bytes", path, max)
	}
	return os.ReadFile(path)
}

func sameFile(path string, want FileEntry) bool {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != writeMode(want.Mode) || fi.Size() != want.Size {
		return false
	}
	data, err := os.ReadFile(path)
	return err == nil && sha256.Sum256(data) == want.SHA256
}

// writeMode keeps the owner's read and write bits of a manifest mode:
// seed files are secrets of the node's own user.
func writeMode(m fs.FileMode) fs.FileMode { return m & 0o600 }

// stage writes every file and the marker into staging, a new empty
// directory, and syncs them all.
func (s *Seed) stage(staging string) error {
	dirs := map[string]bool{}
	var order []string
	mkdir := func(rel string) error {
		var missing []string
		for d := rel; d != "." && !dirs[d]; d = filepath.Dir(d) {
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			p := filepath.Join(staging, missing[i])
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			if err := os.Chmod(p, 0o700); err != nil { // whatever the umask
				return err
			}
			dirs[missing[i]] = true
			order = append(order, missing[i])
		}
		return nil
	}
	write := func(rel string, data []byte, mode fs.FileMode) error {
		if err := mkdir(filepath.Dir(rel)); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(staging, rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Chmod(mode)
		}
		if err == nil {
			err = f.Sync()
		}
		if err2 := f.Close(); err == nil {
			err = err2
		}
		return err
	}
	for _, f := range s.manifest.Files {
		if err := write(filepath.FromSlash(f.Path), s.files[f.Path], writeMode(f.Mode)); err != nil {
			return err
		}
	}
	if err := write(filepath.Join(markerDir, manifestName), s.rawMan, 0o600); err != nil {
		return err
	}
	if err := write(filepath.Join(markerDir, signatureName), s.rawSig, 0o600); err != nil {
		return err
	}
	// Deepest first, so that each directory's entries are durable before
	// its parent's.
	for i := len(order) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Join(staging, order[i])); err != nil {
			return err
		}
	}
	return syncDir(staging)
}

// mkdirParents creates dir and its missing parents 0700 and returns the
// topmost directory it created ("" if dir existed), for removal on failure.
func mkdirParents(dir string) (string, error) {
	top := ""
	for d := dir; ; {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		top = d
		up := filepath.Dir(d)
		if up == d {
			break
		}
		d = up
	}
	if top == "" {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		os.RemoveAll(top)
		return "", err
	}
	return top, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if err2 := d.Close(); err == nil {
		err = err2
	}
	// Some file systems cannot sync a directory; that is no reason to fail.
	if errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}

// rename is rename(2). os.Rename refuses to replace a directory even where
// the system would do it atomically (an empty one), which is the whole point
// here.
func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// removeLeftovers removes the staging and set-aside directories an earlier
// WriteDir into the same target left when it was killed: they may hold
// keys.
func removeLeftovers(parent, base string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() && (strings.HasPrefix(name, "."+base+".staging-") || strings.HasPrefix(name, "."+base+".old-")) {
			os.RemoveAll(filepath.Join(parent, name))
		}
	}
}
