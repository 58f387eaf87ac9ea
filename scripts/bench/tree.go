package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// sameEntry compares one path of two trees cheaply enough to poll: type,
// size, symlink target, and the contents of files up to 1 MiB; bigger files
// count as arrived when size and mtime match (rsync renames its temporary
// file into place only when the copy is complete). Directories are not
// descended into. A path missing on the source must be missing on dst.
func sameEntry(src, dst, rel string) bool {
	sfi, serr := os.Lstat(filepath.Join(src, rel))
	dfi, derr := os.Lstat(filepath.Join(dst, rel))
	if serr != nil {
		return os.IsNotExist(serr) && os.IsNotExist(derr)
	}
	if derr != nil || sfi.Mode().Type() != dfi.Mode().Type() {
		return false
	}
	switch sfi.Mode().Type() {
	case fs.ModeDir:
		return true
	case fs.ModeSymlink:
		a, _ := os.Readlink(filepath.Join(src, rel))
		b, _ := os.Readlink(filepath.Join(dst, rel))
		return a == b
	case 0:
		if sfi.Size() != dfi.Size() {
			return false
		}
		if sfi.Size() > 1<<20 {
			return sfi.ModTime().Equal(dfi.ModTime())
		}
		a, err1 := os.ReadFile(filepath.Join(src, rel))
		b, err2 := os.ReadFile(filepath.Join(dst, rel))
		return err1 == nil && err2 == nil && bytes.Equal(a, b)
	}
	return true
}

// pathsChecker polls a list of changed paths, remembering per target how
// far it has confirmed, so each poll costs only the paths not yet seen.
type pathsChecker struct {
	src  string
	rels []string
	next map[string]int
}

func newPathsChecker(src string, rels []string) *pathsChecker {
	return &pathsChecker{src: src, rels: rels, next: map[string]int{}}
}

func (c *pathsChecker) ok(dst string) bool {
	i := c.next[dst]
	for i < len(c.rels) && sameEntry(c.src, dst, c.rels[i]) {
		i++
	}
	c.next[dst] = i
	return i == len(c.rels)
}

// fullChecker compares whole trees on every poll (small trees only).
type fullChecker struct{ src string }

func (c fullChecker) ok(dst string) bool { return firstDiff(c.src, dst) == "" }

type checker interface{ ok(dst string) bool }

// firstDiff compares two trees completely: names (as raw bytes), types,
// sizes, symlink targets and file contents byte for byte. It returns the
// first difference found, or "" when the trees are identical. The roots'
// own attributes are not compared; of the others, only a file's
// permissions (a chmod must arrive too).
func firstDiff(src, dst string) string {
	return diffDir(src, dst, ".")
}

func names(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := f.Readdirnames(-1)
	sort.Strings(n)
	return n, err
}

func diffDir(src, dst, rel string) string {
	a, err := names(filepath.Join(src, rel))
	if err != nil {
		return fmt.Sprintf("%q: src: %v", rel, err)
	}
	b, err := names(filepath.Join(dst, rel))
	if err != nil {
		return fmt.Sprintf("%q: dst: %v", rel, err)
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || (i < len(a) && a[i] < b[j]):
			return fmt.Sprintf("%q: only in source", filepath.Join(rel, a[i]))
		case i >= len(a) || b[j] < a[i]:
			return fmt.Sprintf("%q: only in target", filepath.Join(rel, b[j]))
		}
		if d := diffEntry(src, dst, filepath.Join(rel, a[i])); d != "" {
			return d
		}
		i++
		j++
	}
	return ""
}

func diffEntry(src, dst, rel string) string {
	sp, dp := filepath.Join(src, rel), filepath.Join(dst, rel)
	sfi, err := os.Lstat(sp)
	if err != nil {
		return fmt.Sprintf("%q: src: %v", rel, err)
	}
	dfi, err := os.Lstat(dp)
	if err != nil {
		return fmt.Sprintf("%q: dst: %v", rel, err)
	}
	if sfi.Mode().Type() != dfi.Mode().Type() {
		return fmt.Sprintf("%q: type differs (%v vs %v)", rel, sfi.Mode().Type(), dfi.Mode().Type())
	}
	switch sfi.Mode().Type() {
	case fs.ModeDir:
		return diffDir(src, dst, rel)
	case fs.ModeSymlink:
		a, _ := os.Readlink(sp)
		b, _ := os.Readlink(dp)
		if a != b {
			return fmt.Sprintf("%q: symlink target differs", rel)
		}
	case 0:
		if sfi.Size() != dfi.Size() {
			return fmt.Sprintf("%q: size differs (%d vs %d)", rel, sfi.Size(), dfi.Size())
		}
		if sfi.Mode().Perm() != dfi.Mode().Perm() {
			return fmt.Sprintf("%q: permissions differ (%v vs %v)", rel, sfi.Mode().Perm(), dfi.Mode().Perm())
		}
		same, err := sameContent(sp, dp)
		if err != nil {
			return fmt.Sprintf("%q: %v", rel, err)
		}
		if !same {
			return fmt.Sprintf("%q: content differs", rel)
		}
	}
	return ""
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea != nil || eb != nil {
			return (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF), nil
		}
	}
}
