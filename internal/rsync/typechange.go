package rsync

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sersyncd/sersyncd/internal/change"
)

// underTypeChanges maps each listed path below a directory that is no
// longer one on the source (now a file, a symlink, or gone) to that
// ancestor, the topmost such one, and drops the duplicates this makes.
//
// Such a path was deleted by the change of its ancestor, and the push of
// the ancestor itself (--delete-missing-args, --force) is what makes the
// target right: rsync -R sends the implied directories of a listed path as
// real directories, following a symlink on the source, so "current/x" with
// "current" now a symlink kept "current" a directory on the target; and
// with "a/b" now a file, "a/b/f" ended in exit 23 ("Not a directory") and
// was parked forever. The ancestor's own event queues it too, but it may be
// in a later batch. The source is never looked at through a symlink: the
// path is checked component by component with lstat, from the root down.
//
// A change mapped to its ancestor is a plain change of the ancestor (no
// longer a directory, so there is nothing below it to push recursively);
// changes of one path are merged (change.Merge).
func underTypeChanges(root string, changes []change.Change) []change.Change {
	isDir := map[string]bool{} // relative directory -> still a directory; for the batch
	at := make(map[string]int, len(changes))
	out := make([]change.Change, 0, len(changes))
	for _, c := range changes {
		p, q := c.Path, c.Path
		for i := 1; i < len(p); i++ {
			if p[i] != '/' {
				continue
			}
			dir := p[:i]
			ok, known := isDir[dir]
			if !known {
				ok = stillDir(filepath.Join(root, dir))
				isDir[dir] = ok
			}
			if !ok {
				q = dir
				break
			}
		}
		if q != p {
			c = change.Change{Path: q}
		}
		if i, ok := at[q]; ok {
			out[i] = change.Merge(out[i], c)
			continue
		}
		at[q] = len(out)
		out = append(out, c)
	}
	return out
}

// stillDir reports whether path is a directory, by lstat. Only a clear
// answer (not a directory, gone) says no: for anything else, such as an
// ancestor the daemon may not search, rsync says what is wrong itself.
func stillDir(path string) bool {
	fi, err := os.Lstat(path)
	if err == nil {
		return fi.IsDir()
	}
	return !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR)
}
