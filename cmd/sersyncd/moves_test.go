package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestRenamesMoveOnTargets renames files and directories in the watched
// tree, in the interleavings that can go wrong, and checks after each that
// every target (a daemon, and a directory over ssh) equals the source byte
// for byte; a renamed directory of 8 MiB must cost under 1 % of its bytes.
func TestRenamesMoveOnTargets(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	for _, kind := range []string{"daemon", "ssh"} {
		t.Run(kind, func(t *testing.T) {
			o := envOptions{targets: 1}
			if kind == "ssh" {
				o.ssh = testutil.StartSSHD(t)
			}
			e := newEnv(t, o)
			addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
			e.editConfig(`<debug start="false"/>`, `<debug start="true"/>`)
			e.start("--metrics", addr)
			sent := func() float64 {
				_, body := httpGet(t, "http://"+addr+"/metrics")
				return metricValue(t, body, "sersyncd_bytes_sent_total")
			}

			const big = 4 << 20
			must(t, os.MkdirAll(e.path("big/small"), 0o755))
			e.write("big/a", randomString(t, big))
			e.write("big/b", randomString(t, big))
			for i := range 100 {
				e.write(fmt.Sprintf("big/small/%03d", i), randomString(t, 100))
			}
			e.converge(20*time.Second, "the big directory")
			// The target is equal before the push that made it so has
			// ended and counted its bytes; an mv makes it equal at once.
			drained := func() {
				testutil.Eventually(t, 20*time.Second, "the queue drained", func() bool {
					for _, ts := range e.status().Targets {
						if ts.Pending > 0 {
							return false
						}
					}
					return true
				})
			}
			drained()
			before := sent()
			renameAt(t, e, "big", "renamed")
			e.converge(20*time.Second, "the big directory renamed")
			drained()
			if n := sent() - before; n > 2*big/100 {
				t.Errorf("renaming 8 MiB sent %.0f bytes, want under 1 %%\n%s", n, tail(e.proc.Output(), 3000))
			} else {
				t.Logf("renaming 8 MiB sent %.0f bytes", n)
			}

			odd := []string{"new\nline", "-rf", `it's "q"`, "sp ace*", "$(touch x)"}
			steps := []struct {
				name string
				do   func()
			}{
				{"written to at once", func() {
					renameAt(t, e, "renamed", "again")
					e.write("again/a", "rewritten")
					e.write("again/small/new", "new")
					must(t, os.Remove(e.path("again/small/000")))
				}},
				{"chain", func() {
					renameAt(t, e, "again", "b")
					renameAt(t, e, "b", "c")
					renameAt(t, e, "c/small/001", "c/small/x")
					renameAt(t, e, "c/small/x", "c/small/y")
				}},
				{"over existing paths", func() {
					e.write("f1", "one")
					e.write("f2", "two")
					must(t, os.MkdirAll(e.path("d1/sub"), 0o755))
					e.write("d1/sub/x", "x")
					must(t, os.Mkdir(e.path("d2"), 0o700))
					e.converge(10*time.Second, "before")
					renameAt(t, e, "f1", "f2")
					renameAt(t, e, "d1", "d2")
				}},
				{"into a new directory", func() {
					must(t, os.MkdirAll(e.path("n/m"), 0o755))
					renameAt(t, e, "f2", "n/m/f")
					renameAt(t, e, "c/small/002", "n/002")
				}},
				{"odd names", func() {
					must(t, os.Mkdir(e.path("o"), 0o755))
					for _, n := range odd {
						e.write("o/"+n, n)
					}
					e.converge(10*time.Second, "before")
					for _, n := range odd {
						renameAt(t, e, "o/"+n, "o/-"+n+"'")
					}
					renameAt(t, e, "o", "-o\n'")
				}},
				{"out of the tree and back in", func() {
					out := t.TempDir()
					must(t, os.Rename(e.path("d2"), filepath.Join(out, "d2")))
					must(t, os.Rename(filepath.Join(out, "d2"), e.path("back")))
				}},
			}
			for _, s := range steps {
				s.do()
				e.converge(20*time.Second, s.name)
			}
		})
	}
}

// TestRenameWhilePushed renames a directory while its first push is still
// running (rsync slowed by --bwlimit), and again while the push of the
// rename runs: the targets must end equal to the source.
func TestRenameWhilePushed(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	for _, kind := range []string{"daemon", "ssh"} {
		t.Run(kind, func(t *testing.T) {
			o := envOptions{targets: 1, params: "-artuz --bwlimit=4000"}
			if kind == "ssh" {
				o.ssh = testutil.StartSSHD(t)
			}
			e := newEnv(t, o)
			e.editConfig(`<debug start="false"/>`, `<debug start="true"/>`)
			e.start()
			must(t, os.MkdirAll(e.path("d/sub"), 0o755))
			for i := range 4 {
				e.write(fmt.Sprintf("d/sub/%d", i), randomString(t, 1<<20))
			}
			time.Sleep(300 * time.Millisecond) // the push of d is under way: 4 MiB at 4 MB/s
			renameAt(t, e, "d", "e")
			time.Sleep(300 * time.Millisecond)
			renameAt(t, e, "e", "f")
			e.write("f/sub/late", "late")
			e.converge(30*time.Second, "renamed while pushed")
		})
	}
}

// TestRenameKeepsDeleted: an archive target (<delete start="false">) keeps
// the old name of a renamed directory and gets the new one.
func TestRenameKeepsDeleted(t *testing.T) {
	testutil.Integration(t)
	for _, kind := range []string{"daemon", "ssh"} {
		t.Run(kind, func(t *testing.T) {
			o := envOptions{targets: 1, keepDeleted: true}
			if kind == "ssh" {
				o.ssh = testutil.StartSSHD(t)
			}
			e := newEnv(t, o)
			e.start()
			must(t, os.MkdirAll(e.path("d"), 0o755))
			content := randomString(t, 1<<20)
			e.write("d/f", content)
			e.converge(10*time.Second, "before")
			renameAt(t, e, "d", "e")
			e.ignore = append(e.ignore, "d")
			e.converge(10*time.Second, "renamed")
			got, err := os.ReadFile(filepath.Join(e.targets[0].Dir, "d/f"))
			if err != nil || string(got) != content {
				t.Errorf("the old name on the archive target: %d bytes, %v; want it kept", len(got), err)
			}
		})
	}
}

func renameAt(t *testing.T, e *env, from, to string) {
	t.Helper()
	// rename(2) itself: os.Rename refuses to replace a directory.
	must(t, syscall.Rename(e.path(from), e.path(to)))
}

func randomString(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}
