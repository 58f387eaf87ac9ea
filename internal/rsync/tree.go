package rsync

// Tree changes: a directory whose whole content is new, pushed with
// everything below it.

import (
	"io/fs"
	"path/filepath"

	"github.com/sersyncd/sersyncd/internal/change"
)

// listed is the paths a push lists: each change's path, and for a Tree
// change every entry below it that the filter keeps, read now.
func (t *Target) listed(changes []change.Change) []string {
	paths := make([]string, 0, len(changes))
	for _, c := range changes {
		paths = append(paths, c.Path)
		if c.Tree {
			paths = t.below(paths, c.Path)
		}
	}
	return paths
}

// below appends the entries below dir that the filter keeps. An entry that
// cannot be read is left out: the push of dir itself, listed already,
// fails or finds it gone.
func (t *Target) below(paths []string, dir string) []string {
	root := filepath.Join(t.opt.Source, dir)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		rel := dir + "/" + p[len(root)+1:]
		if t.opt.Filter.ExcludedAs(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	return paths
}
