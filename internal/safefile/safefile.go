// Package safefile opens the files the daemon writes (the failLog, the pid
// file, the log of -d) so that whoever can plant a symbolic link at their
// path cannot make a daemon running as root write elsewhere: sersync's
// stock failLog is in /tmp, where any user can make /tmp/rsync_fail_log.sh
// a link to /etc/shadow, or a dangling link to where a new root-owned file
// should appear.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Check says why path must not be written, or nil: it is a symbolic link
// or not a regular file; a directory above it is writable by everyone
// without the sticky bit, or its own directory belongs to another user than
// root and the daemon's (either could replace the file by a link between a
// check and an open, or the directory itself); or, in a world-writable
// directory, the file belongs to another user (who would read what the
// daemon writes). A path that does not exist yet is fine when its
// directories are.
func Check(path string) error {
	dir := filepath.Dir(path)
	for d := dir; ; d = filepath.Dir(d) {
		di, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Made by MkdirAll, by us.
		case err != nil:
			return fmt.Errorf("%s: %w", path, err)
		case !di.IsDir():
			return fmt.Errorf("%s: %s is not a directory", path, d)
		case di.Mode().Perm()&0o002 != 0 && di.Mode()&fs.ModeSticky == 0:
			return fmt.Errorf("%s: refusing to write below %s: it is writable by everyone without the sticky bit (chmod +t or o-w it, or choose another directory)", path, d)
		case d == dir:
			if uid := owner(di); uid != 0 && uid != os.Geteuid() {
				return fmt.Errorf("%s: refusing to write in %s: it belongs to uid %d, who could put a link in the file's place (choose a directory of root's or this user's)", path, d, uid)
			}
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return checkFile(path, fi)
}

// owner returns the uid that owns fi's file, or -1.
func owner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func checkFile(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link: refusing to write through it (remove it, or choose another path)", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s): refusing to write to it", path, fi.Mode().Type())
	}
	if uid := owner(fi); uid != os.Geteuid() {
		if di, err := os.Stat(filepath.Dir(path)); err == nil && di.Mode().Perm()&0o002 != 0 {
			return fmt.Errorf("%s belongs to uid %d in a directory everyone may write to: refusing to write to it (remove it, or choose another path)", path, uid)
		}
	}
	return nil
}

// OpenAppend opens path to append to, creating it (and its directory) with
// perm, after Check; the open itself never follows a link planted after
// the check (O_NOFOLLOW), nor blocks on a FIFO.
func OpenAppend(path string, perm os.FileMode) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create directory of %s: %w", path, err)
	}
	return open(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, perm)
}

// Create makes path anew with perm, failing if anything (a link
// included) is there already.
func Create(path string, perm os.FileMode) (*os.File, error) {
	return open(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
}

func open(path string, flag int, perm os.FileMode) (*os.File, error) {
	if err := Check(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: refusing to write through it (remove it, or choose another path)", path)
	}
	if err != nil {
		return nil, err
	}
	// What was opened is what was checked: a file swapped in between the
	// check and the open is refused too.
	fi, err := f.Stat()
	if err == nil {
		err = checkFile(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
