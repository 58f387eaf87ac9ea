package safefile

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

// Rotating appends to a file opened by OpenAppend, at the first write, and
// renames it to path.1 (path.1 to path.2, ...) once it would grow past
// MaxBytes, keeping Backups old files. It replaces lumberjack, whose opens
// follow links.
type Rotating struct {
	Path     string
	MaxBytes int64
	Backups  int
	Perm     os.FileMode

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Write appends p, rotating first when p would take the file past MaxBytes.
func (r *Rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size > 0 && r.size+int64(len(p)) > r.MaxBytes {
		if err := r.rotate(); err != nil {
			return 0, err
		}
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *Rotating) open() error {
	f, err := OpenAppend(r.Path, r.Perm)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// rotate closes the file and shifts the names; the next write opens a
// new one. rename moves a link planted meanwhile, never what it points to.
func (r *Rotating) rotate() error {
	err := r.f.Close()
	r.f, r.size = nil, 0
	if err != nil {
		return fmt.Errorf("close %s: %w", r.Path, err)
	}
	for i := r.Backups; i > 1; i-- {
		_ = os.Rename(r.Path+"."+strconv.Itoa(i-1), r.Path+"."+strconv.Itoa(i))
	}
	if r.Backups < 1 {
		return os.Remove(r.Path)
	}
	if err := os.Rename(r.Path, r.Path+".1"); err != nil {
		return fmt.Errorf("rotate %s: %w", r.Path, err)
	}
	return nil
}

// Close closes the file, if one is open.
func (r *Rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
