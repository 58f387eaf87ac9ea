package testutil

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

const maxDiffs = 20

// DiffTrees compares the trees under src and dst and returns the
// differences, sorted, at most 20 plus a "... and N more" line. An empty
// result means identical.
//
// Compared: entry types, file contents, permission bits (not for symlinks),
// symlink targets (never followed) and missing or extra entries. Not
// compared: mtimes (sersyncd's correctness is about content), ownership, and
// the attributes of the two roots themselves, which are containers chosen by
// the test (e.g. a daemon module directory) rather than replicated data.
// Names are handled as raw bytes, so any name a filesystem allows works.
func DiffTrees(src, dst string) []string {
	var diffs []string
	report := func(rel, format string, args ...any) {
		diffs = append(diffs, fmt.Sprintf("%q: ", rel)+fmt.Sprintf(format, args...))
	}
	for _, root := range []struct{ side, path string }{{"src", src}, {"dst", dst}} {
		fi, err := os.Lstat(root.path)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s root %q: %v", root.side, root.path, err))
		} else if !fi.IsDir() {
			diffs = append(diffs, fmt.Sprintf("%s root %q: not a directory (%s)", root.side, root.path, kind(fi.Mode())))
		}
	}
	if len(diffs) == 0 {
		diffDir(src, dst, ".", report)
	}
	sort.Strings(diffs)
	if len(diffs) > maxDiffs {
		more := len(diffs) - maxDiffs
		diffs = append(diffs[:maxDiffs:maxDiffs], fmt.Sprintf("... and %d more", more))
	}
	return diffs
}

func diffDir(src, dst, rel string, report func(rel, format string, args ...any)) {
	srcNames, err := readNames(filepath.Join(src, rel))
	if err != nil {
		report(rel, "src: %v", err)
		return
	}
	dstNames, err := readNames(filepath.Join(dst, rel))
	if err != nil {
		report(rel, "dst: %v", err)
		return
	}
	for name := range srcNames {
		if !dstNames[name] {
			r := filepath.Join(rel, name)
			report(r, "only in src (%s)", lstatKind(filepath.Join(src, r)))
		}
	}
	for name := range dstNames {
		if !srcNames[name] {
			r := filepath.Join(rel, name)
			report(r, "only in dst (%s)", lstatKind(filepath.Join(dst, r)))
		}
	}
	for name := range srcNames {
		if dstNames[name] {
			diffEntry(src, dst, filepath.Join(rel, name), report)
		}
	}
}

func diffEntry(src, dst, rel string, report func(rel, format string, args ...any)) {
	sp, dp := filepath.Join(src, rel), filepath.Join(dst, rel)
	sfi, err := os.Lstat(sp)
	if err != nil {
		report(rel, "src: %v", err)
		return
	}
	dfi, err := os.Lstat(dp)
	if err != nil {
		report(rel, "dst: %v", err)
		return
	}
	st, dt := sfi.Mode().Type(), dfi.Mode().Type()
	if st != dt {
		report(rel, "type differs: src %s, dst %s", kind(sfi.Mode()), kind(dfi.Mode()))
		return
	}
	if st != fs.ModeSymlink {
		if sm, dm := perm(sfi.Mode()), perm(dfi.Mode()); sm != dm {
			report(rel, "mode differs: src %04o, dst %04o", sm, dm)
		}
	}
	switch st {
	case fs.ModeDir:
		diffDir(src, dst, rel, report)
	case fs.ModeSymlink:
		stgt, err := os.Readlink(sp)
		if err != nil {
			report(rel, "src: %v", err)
			return
		}
		dtgt, err := os.Readlink(dp)
		if err != nil {
			report(rel, "dst: %v", err)
			return
		}
		if stgt != dtgt {
			report(rel, "symlink target differs: src %q, dst %q", stgt, dtgt)
		}
	case 0: // regular file
		if sfi.Size() != dfi.Size() {
			report(rel, "size differs: src %d bytes, dst %d bytes", sfi.Size(), dfi.Size())
			return
		}
		off, err := firstDifference(sp, dp)
		if err != nil {
			report(rel, "%v", err)
		} else if off >= 0 {
			report(rel, "content differs at byte %d (%d bytes)", off, sfi.Size())
		}
	}
}

// perm mirrors the mode&0o7777 of stat(2); Go keeps setuid, setgid and
// sticky outside the permission bits.
func perm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "file"
	case fs.ModeDir:
		return "dir"
	case fs.ModeSymlink:
		return "symlink"
	case fs.ModeNamedPipe:
		return "fifo"
	case fs.ModeSocket:
		return "socket"
	case fs.ModeDevice:
		return "block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "char device"
	default:
		return fmt.Sprintf("type %v", m.Type())
	}
}

func lstatKind(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	return kind(fi.Mode())
}

func readNames(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names, nil
}

// firstDifference returns the offset of the first differing byte, or -1.
func firstDifference(a, b string) (int64, error) {
	fa, err := os.Open(a)
	if err != nil {
		return 0, fmt.Errorf("src: %v", err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return 0, fmt.Errorf("dst: %v", err)
	}
	defer fb.Close()
	bufA, bufB := make([]byte, 32<<10), make([]byte, 32<<10)
	var off int64
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		n := min(na, nb)
		if i := mismatch(bufA[:n], bufB[:n]); i >= 0 {
			return off + int64(i), nil
		}
		if na != nb {
			// The files changed size while being read.
			return off + int64(n), nil
		}
		off += int64(n)
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		if errA != nil && !endA {
			return 0, fmt.Errorf("src: %v", errA)
		}
		if errB != nil && !endB {
			return 0, fmt.Errorf("dst: %v", errB)
		}
		if endA || endB {
			return -1, nil
		}
	}
}

func mismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Converged polls DiffTrees every 50ms for up to timeout and returns the
// last differences; empty means the trees converged.
func Converged(src, dst string, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		diffs := DiffTrees(src, dst)
		if len(diffs) == 0 || !time.Now().Before(deadline) {
			return diffs
		}
		time.Sleep(min(50*time.Millisecond, time.Until(deadline)))
	}
}

// WaitConverged is Converged that fails the test on timeout.
func WaitConverged(t testing.TB, src, dst string, timeout time.Duration, msg ...any) {
	t.Helper()
	diffs := Converged(src, dst, timeout)
	if len(diffs) == 0 {
		return
	}
	var b bytes.Buffer
	if len(msg) > 0 {
		b.WriteString(formatMsg(msg))
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "trees %s and %s did not converge within %v:", src, dst, timeout)
	for _, d := range diffs {
		b.WriteString("\n  ")
		b.WriteString(d)
	}
	t.Fatal(b.String())
}

// formatMsg takes a slice rather than ...any so that vet does not classify
// WaitConverged as a Print wrapper and reject "%d"-style messages.
func formatMsg(msg []any) string {
	if format, ok := msg[0].(string); ok && len(msg) > 1 {
		return fmt.Sprintf(format, msg[1:]...)
	}
	return fmt.Sprint(msg...)
}
