package sink

import (
	"os"
	"path/filepath"
	"time"
)

// spillPattern names the local directories where a tar in a bucket stages
// its big bodies (os.MkdirTemp's pattern, in the system's temporary
// directory).
const spillPattern = "haul-tar-spill-"

// spillLockName is the file in a spill directory that its process holds
// locked (flock) while it lives: a directory whose lock can be taken was left
// by a process that died (kill -9, a node's OOM killer) and is removed by the
// next run, so that killed runs do not fill the temporary directory.
const spillLockName = "lock"

// newSpillDir makes this process's spill directory, locked, after removing
// those that dead processes left.
func newSpillDir() (dir string, held *os.File, err error) {
	sweepSpillDirs(os.TempDir(), time.Now())
	dir, err = os.MkdirTemp("", spillPattern)
	if err != nil {
		return "", nil, err
	}
	held, err = os.OpenFile(filepath.Join(dir, spillLockName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if err = lock(held); err != nil {
			held.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, held, nil
}

// sweepSpillDirs removes the spill directories in tmp whose process is gone:
// their lock can be taken, or they have none. A directory younger than a
// minute is left alone: its process may be between making it and locking
// it.
func sweepSpillDirs(tmp string, now time.Time) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, spillPattern+"*"))
	for _, d := range dirs {
		if fi, err := os.Lstat(d); err != nil || !fi.IsDir() || now.Sub(fi.ModTime()) < time.Minute {
			continue
		}
		f, err := os.Open(filepath.Join(d, spillLockName))
		if os.IsNotExist(err) {
			os.RemoveAll(d)
			continue
		}
		if err != nil {
			continue
		}
		if lock(f) == nil {
			os.RemoveAll(d) // its process is gone
		}
		f.Close()
	}
}
