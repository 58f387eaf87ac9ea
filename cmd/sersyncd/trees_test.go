package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// mkfile writes rel below the source, making its directories.
func (e *env) mkfile(rel, content string) {
	e.t.Helper()
	must(e.t, os.MkdirAll(filepath.Dir(e.path(rel)), 0o755))
	e.write(rel, content)
}

// absentOnTargets fails the test when a target has one of rels.
func (e *env) absentOnTargets(rels ...string) {
	e.t.Helper()
	for _, d := range e.targets {
		for _, rel := range rels {
			if _, err := os.Lstat(filepath.Join(d.Dir, rel)); !errors.Is(err, fs.ErrNotExist) {
				e.t.Errorf("%s has %q (%v), which it must not", d.Module, rel, err)
			}
		}
	}
}

// TestNewDirectoriesReplicate: new directories, each pushed as one tree
// with the real rsync to real daemons, arrive whole, with what the filter
// excludes left out, and what changes below them later arrives too.
func TestNewDirectoriesReplicate(t *testing.T) {
	testutil.Integration(t)
	cases := []struct {
		name string
		opt  envOptions
		// excluded: written in the new directories; must not arrive.
		excluded []string
	}{
		{name: "no filter", opt: envOptions{targets: 2}},
		{name: "sersync expressions", opt: envOptions{targets: 2, excludes: []string{`(.*)\.swp$`, `^burst/d1/cache`}},
			excluded: []string{"burst/d0/x.swp", "burst/d1/cache", "nest/a/b/y.swp"}},
		{name: "rsync rules", opt: envOptions{targets: 2, rules: []string{"- *.swp", "- /burst/d1/cache/"}},
			excluded: []string{"burst/d0/x.swp", "burst/d1/cache", "nest/a/b/y.swp"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.opt)
			e.ignore = tc.excluded
			e.start()
			// A burst into new directories, nested ones among them.
			for d := 0; d < 10; d++ {
				for f := 0; f < 50; f++ {
					e.mkfile(fmt.Sprintf("burst/d%d/f%02d", d, f), fmt.Sprintf("file %d of dir %d", f, d))
				}
			}
			e.mkfile("nest/a/b/c/deep", "deep")
			e.mkfile("burst/d0/x.swp", "editor swap")
			e.mkfile("burst/d1/cache/c", "cache")
			e.mkfile("nest/a/b/y.swp", "editor swap")
			e.converge(20*time.Second, "after a burst into new directories")
			e.absentOnTargets(tc.excluded...)
			// Written below a tree already handed on: a change of its own.
			e.write("burst/d3/late", "late")
			e.write("nest/a/b/c/deep", "rewritten")
			must(t, os.Remove(e.path("burst/d4/f00")))
			e.converge(10*time.Second, "after changes below the trees")
			if st := e.status(); st.Targets[0].Failed != 0 {
				t.Errorf("failures: %+v", st.Targets[0])
			}
		})
	}
}

// TestRemovedAndMadeAgain: a directory removed (rm -rf) and made again
// under its name, with new content: its old content goes from the target,
// before and after its first push, and a target that keeps deleted files
// keeps it.
func TestRemovedAndMadeAgain(t *testing.T) {
	testutil.Integration(t)
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepDeleted=%v", keep), func(t *testing.T) {
			e := newEnv(t, envOptions{targets: 2, keepDeleted: keep})
			e.start()
			for i := 0; i < 20; i++ {
				e.mkfile(fmt.Sprintf("d/old%02d", i), "old")
			}
			e.mkfile("d/same", "AAAA")
			e.converge(10*time.Second, "the first tree")
			// Removed and made again at once: the second tree may go in
			// the same push as the removals below the first.
			must(t, os.RemoveAll(e.path("d")))
			e.mkfile("d/same", "BBBB")
			e.mkfile("d/sub/new", "new")
			// Removed and made again before its first push.
			e.mkfile("q/first", "first")
			must(t, os.RemoveAll(e.path("q")))
			e.mkfile("q/second", "second")
			if keep {
				e.ignore = []string{"d/old", "q/first"}
			}
			e.converge(10*time.Second, "after rm -rf and mkdir")
			for _, d := range e.targets {
				b, err := os.ReadFile(filepath.Join(d.Dir, "d/same"))
				if err != nil || string(b) != "BBBB" {
					t.Errorf("%s: d/same %q %v", d.Module, b, err)
				}
				_, err = os.Lstat(filepath.Join(d.Dir, "d/old00"))
				if keep && err != nil {
					t.Errorf("%s keeps deleted files but lost d/old00: %v", d.Module, err)
				}
			}
			if !keep {
				e.absentOnTargets("d/old00", "d/old19", "q/first")
			}
		})
	}
}

// TestBigFileInNewDirectory: a file still being written in a new directory
// holds the directory's push: it arrives once, whole, after its writer
// closed it; the files beside it arrive with it. A 100 ms settle holds a
// big file 1 s after each write, so that the race detector's and a busy CI
// machine's stalls of the writer (it was pushed at its first MiB once, with
// a 20 ms settle's 200 ms) are not taken for its end.
func TestBigFileInNewDirectory(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, settle: "100ms"})
	e.start()
	e.mkfile("new/small", "small")
	f, err := os.Create(e.path("new/big"))
	must(t, err)
	defer f.Close()
	piece := []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
	for i := 0; i < 32; i++ {                                  // 32 MiB, 20 ms apart
		if _, err := f.Write(piece); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, f.Close())
	e.converge(20*time.Second, "after the big file was closed")
	d := e.targets[0]
	if n := d.Received()["new/big"]; n != 1 {
		t.Errorf("new/big received %d times, want once, whole:\n%s", n, tail(d.Log(), 3000))
	}
}

// TestNewDirectoryPartialFailure: a new directory holding a file the
// pushing rsync cannot read is pushed but for that file (exit 23), and its
// tree change is not acknowledged: it stays in the queue, parked, until a
// retry after the file became readable carries it. rsync runs as nobody
// here, so that root's reading everything does not hide the failure.
func TestNewDirectoryPartialFailure(t *testing.T) {
	testutil.Integration(t)
	bin := filepath.Dir(testutil.RsyncAsNobody(t))
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "2s"})
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	for _, dir := range []string{filepath.Dir(e.dir), e.dir} {
		must(t, os.Chmod(dir, 0o755))
	}
	e.start()
	must(t, os.Mkdir(e.path("new"), 0o755))
	e.write("new/readable", "r")
	must(t, os.WriteFile(e.path("new/secret"), []byte("not for nobody"), 0o600))
	waitLog(t, e, 20*time.Second, `push of \"new\" failed`)
	d := e.targets[0]
	if b, err := os.ReadFile(filepath.Join(d.Dir, "new/readable")); err != nil || string(b) != "r" {
		t.Errorf("the readable file of the failing tree: %q %v", b, err)
	}
	if ts := e.status().Targets[0]; ts.Failed == 0 {
		t.Fatalf("the tree failed partially, yet status shows no failure: %+v", ts)
	}
	must(t, os.Chmod(e.path("new/secret"), 0o644))
	e.converge(10*time.Second, "after the secret became readable (a retry of the parked tree)")
	e.waitClean(10*time.Second, "", "status after the chmod")
}
