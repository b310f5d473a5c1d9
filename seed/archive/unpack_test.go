package archive_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sowerproject/sower/seed/archive"
)

func TestWriteDir(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	now := time.Now()
	filesA := followerFiles(p)
	seedA := buildPlain(t, p, testMetadata(p.pin, now), filesA)
	mdB := testMetadata(p.pin, now)
	mdB.SeedID = "seed-0002"
	filesB := []archive.File{{Path: "tls/server.crt", Data: []byte("second seed")}, {Path: "other/data.key", Data: []byte("k")}}
	seedB := buildPlain(t, p, mdB, filesB)

	unpack := func(t *testing.T, seed []byte, dir string) error {
		_, err := archive.UnpackPlain(bytes.NewReader(seed), dir, p.pin)
		return err
	}
	inode := func(t *testing.T, path string) os.FileInfo {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}

	tests := map[string]struct {
		// setup prepares parent and returns the target directory.
		setup func(t *testing.T, parent string) string
		seed  []byte
		want  error
		// check looks at the result; files are the seed's files expected
		// in the target.
		files []archive.File
		check func(t *testing.T, parent, dir string)
	}{
		"new directory": {
			setup: func(t *testing.T, parent string) string { return filepath.Join(parent, "seed") },
			seed:  seedA, files: filesA,
		},
		"missing parents are created 0700": {
			setup: func(t *testing.T, parent string) string { return filepath.Join(parent, "a", "b", "seed") },
			seed:  seedA, files: filesA,
			check: func(t *testing.T, parent, dir string) {
				for _, d := range []string{filepath.Join(parent, "a"), filepath.Join(parent, "a", "b")} {
					if got := perm(t, d); got != 0o700 {
						t.Errorf("%s: mode %04o, want 0700", d, got)
					}
				}
			},
		},
		"existing empty directory": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "seed")
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedA, files: filesA,
		},
		"same seed twice is harmless": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "seed")
				if err := unpack(t, seedA, dir); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedA, files: filesA,
			check: func(t *testing.T, parent, dir string) {
				// A second unpack of the same seed must not rewrite a file.
				before := inode(t, filepath.Join(dir, "tls", "server.key"))
				if err := unpack(t, seedA, dir); err != nil {
					t.Fatal(err)
				}
				if !os.SameFile(before, inode(t, filepath.Join(dir, "tls", "server.key"))) {
					t.Error("the same seed was written again")
				}
			},
		},
		"another seed replaces the previous one": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "seed")
				if err := unpack(t, seedA, dir); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedB, files: filesB,
			check: func(t *testing.T, parent, dir string) {
				if _, err := os.Stat(filepath.Join(dir, "data.key")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a file of the previous seed is still there: %v", err)
				}
			},
		},
		"leftovers of a killed unpack are removed": {
			setup: func(t *testing.T, parent string) string {
				for _, d := range []string{".seed.staging-123", ".seed.old-456"} {
					if err := os.MkdirAll(filepath.Join(parent, d, "tls"), 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(parent, d, "tls", "server.key"), []byte("old key"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				return filepath.Join(parent, "seed")
			},
			seed: seedA, files: filesA,
		},
		"a damaged copy of the seed is repaired": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "seed")
				if err := unpack(t, seedA, dir); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "data.key"), []byte("damaged"), 0o600); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedA, files: filesA,
		},
		"a directory that is not a seed is refused": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "etc")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("root"), 0o644); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedA,
			want: archive.ErrTargetNotSeed,
			check: func(t *testing.T, parent, dir string) {
				if b, err := os.ReadFile(filepath.Join(dir, "passwd")); err != nil || string(b) != "root" {
					t.Errorf("the existing directory was changed: %q, %v", b, err)
				}
				entries, _ := os.ReadDir(parent)
				if len(entries) != 1 {
					t.Errorf("left %d entries in the parent, want only the existing directory", len(entries))
				}
			},
		},
		"a file in the way is refused": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "seed")
				if err := os.WriteFile(dir, []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedA,
			want: archive.ErrTargetNotSeed,
		},
		"a symlink in the way is refused": {
			setup: func(t *testing.T, parent string) string {
				dir := filepath.Join(parent, "seed")
				if err := os.Symlink(t.TempDir(), dir); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			seed: seedA,
			want: archive.ErrTargetNotSeed,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := tc.setup(t, parent)
			err := unpack(t, tc.seed, dir)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, f := range tc.files {
				got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
				if err != nil || !bytes.Equal(got, f.Data) {
					t.Errorf("%s: %q, %v", f.Path, got, err)
				}
			}
			if tc.want == nil {
				if got := perm(t, dir); got != 0o700 {
					t.Errorf("target mode %04o, want 0700", got)
				}
				// Nothing but the target is left beside it.
				entries, _ := os.ReadDir(filepath.Dir(dir))
				if len(entries) != 1 {
					var names []string
					for _, e := range entries {
						names = append(names, e.Name())
					}
					t.Errorf("beside the target: %q, want only %q", names, filepath.Base(dir))
				}
			}
			if tc.check != nil {
				tc.check(t, parent, dir)
			}
		})
	}
}

// TestWriteDirFailureLeavesNothing makes the write fail after verification
// and checks that no staging directory or created parent is left.
func TestWriteDirFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	p := newPKI(t, keyP256, shapeLeaf)
	seed := buildPlain(t, p, testMetadata(p.pin, time.Now()), followerFiles(p))
	tests := map[string]struct {
		setup func(t *testing.T, parent string) string
	}{
		"parent is a file": {
			setup: func(t *testing.T, parent string) string {
				f := filepath.Join(parent, "file")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(f, "seed")
			},
		},
		"created parents are removed": {
			setup: func(t *testing.T, parent string) string {
				// a/b is created, then c is a file in the way of a/b/c/seed.
				f := filepath.Join(parent, "c")
				if err := os.WriteFile(f, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(f, filepath.Join(parent, "link")); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(parent, "link", "x", "seed")
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			before, _ := os.ReadDir(parent)
			dir := tc.setup(t, parent)
			setup, _ := os.ReadDir(parent)
			if _, err := archive.UnpackPlain(bytes.NewReader(seed), dir, p.pin); err == nil {
				t.Fatal("unpack succeeded")
			}
			after, _ := os.ReadDir(parent)
			if len(after) != len(setup) {
				t.Errorf("parent held %d entries after setup, %d after the failed unpack (%d before)", len(setup), len(after), len(before))
			}
		})
	}
}
