package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// socketDir holds the Unix sockets etcd listens on behind its gate; only
// the node's own process reaches them.
const socketDir = "run"

// ErrDataDirInUse is returned when another sower process holds the data dir.
var ErrDataDirInUse = errors.New("server: data dir is in use by another sower process")

// dataDir is a node's data directory, locked for the life of the process.
//
//	<data-dir>/sower.lock   flock held while the node runs
//	<data-dir>/etcd/        the etcd member's data
//	<data-dir>/admin.key    the admin API key, written once at bootstrap (0600)
//	<data-dir>/run/         etcd's Unix sockets behind the gate (0700)
type dataDir struct {
	path string
	lock *os.File
}

// openDataDir creates the directory (0700) if needed, proves it writable and
// takes an exclusive lock, so that two nodes never share one etcd directory.
// It never changes files already in the directory.
func openDataDir(path string) (*dataDir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("server: data-dir %q: %w", path, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("server: cannot create data-dir %s: %w; choose a writable directory with --data-dir", abs, unwrapPathErr(err))
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("server: data-dir %s: %w", abs, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("server: data-dir %s is not a directory; choose another --data-dir", abs)
	}
	f, err := os.OpenFile(filepath.Join(abs, "sower.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: data-dir %s is not writable (%w); fix its permissions or choose another --data-dir", abs, unwrapPathErr(err))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s; stop the other process or choose another --data-dir", ErrDataDirInUse, abs)
	}
	if st.Mode().Perm()&0o077 != 0 {
		// The directory holds the data key and etcd's unencrypted pages:
		// tighten it rather than refuse, since it is ours.
		if err := os.Chmod(abs, 0o700); err != nil {
			f.Close()
			return nil, fmt.Errorf("server: data-dir %s is readable by others and cannot be made 0700: %w", abs, err)
		}
	}
	return &dataDir{path: abs, lock: f}, nil
}

func (d *dataDir) join(elem ...string) string {
	return filepath.Join(append([]string{d.path}, elem...)...)
}

func (d *dataDir) close() {
	if d.lock != nil {
		_ = syscall.Flock(int(d.lock.Fd()), syscall.LOCK_UN)
		d.lock.Close()
		d.lock = nil
	}
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writeFileAtomic writes data to path with mode perm through a temporary
// file in the same directory, so a crash leaves either the old file or the
// new one, never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
