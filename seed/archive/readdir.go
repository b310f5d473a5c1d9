package archive

import (
	"fmt"
	"path/filepath"
)

// ReadDir returns the manifest of a seed that WriteDir (or `sower seed
// unpack`, or the seed fetcher) wrote into dir, after checking that every
// file it lists is there with its mode, size and hash. It does not verify
// the signature again: WriteDir wrote nothing before it had, and the
// signer's certificate may have expired since, while the node's own
// certificates are still valid.
func ReadDir(dir string) (Manifest, error) {
	raw, err := readSmallFile(filepath.Join(dir, markerDir, manifestName), maxManifestSize)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s holds no unpacked seed (unpack one with `sower seed unpack`): %w", ErrTargetNotSeed, dir, err)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return Manifest{}, err
	}
	for _, f := range m.Files {
		if !sameFile(filepath.Join(dir, filepath.FromSlash(f.Path)), f) {
			return Manifest{}, fmt.Errorf("%w: %s in %s differs from the seed's manifest (mode, size or hash); unpack the seed again", ErrHashMismatch, f.Path, dir)
		}
	}
	return m, nil
}
