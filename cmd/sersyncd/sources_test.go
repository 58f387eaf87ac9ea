package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// twoTrees is a daemon watching two source trees: A pushed to two rsync
// daemons (a0, a1), B to a third (b0). A has the top-level filter (*.tmp
// excluded), B a <filter> of its own in its <localpath> (*.log excluded,
// *.tmp pushed).
type twoTrees struct {
	*env
	a, b       string
	a0, a1, b0 *testutil.Daemon
}

// bSection is tree B's <localpath>.
func (tt *twoTrees) bSection() string {
	return `	<localpath watch="` + tt.b + `">
	    <remote ip="127.0.0.3" name="b0"/>
	    <filter start="true"><exclude expression="(.*)\.log"></exclude></filter>
	</localpath>`
}

func newTwoTrees(t *testing.T) *twoTrees {
	t.Helper()
	testutil.RequireRsync(t)
	e := &env{t: t, bin: testutil.BuildBinary(t), dir: t.TempDir()}
	e.db = filepath.Join(e.dir, "queue.db")
	tt := &twoTrees{env: e, a: filepath.Join(e.dir, "tree a"), b: filepath.Join(e.dir, "tree-b")}
	must(t, os.Mkdir(tt.a, 0o755))
	must(t, os.Mkdir(tt.b, 0o755))
	port := testutil.FreePort(t)
	start := func(module, ip string) *testutil.Daemon {
		return testutil.StartDaemon(t, testutil.DaemonOptions{Module: module, Address: ip, Port: port})
	}
	tt.a0, tt.a1, tt.b0 = start("a0", "127.0.0.1"), start("a1", "127.0.0.2"), start("b0", "127.0.0.3")
	e.config = filepath.Join(e.dir, "confxml.xml")
	must(t, os.WriteFile(e.config, []byte(fmt.Sprintf(`<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <filter start="true"><exclude expression="(.*)\.tmp"></exclude></filter>
    <inotify>
	<delete start="true"/><createFolder start="true"/><createFile start="false"/><closeWrite start="true"/>
	<moveFrom start="true"/><moveTo start="true"/><attrib start="false"/><modify start="false"/>
    </inotify>
    <sersync>
	<localpath watch="%s">
	    <remote ip="127.0.0.1" name="a0"/>
	    <remote ip="127.0.0.2" name="a1"/>
	</localpath>
%s
	<rsync>
	    <commonParams params="-artuz"/>
	    <userDefinedPort start="true" port="%d"/>
	    <timeout start="true" time="20"/>
	</rsync>
	<failLog path="%s/fail.log" timeToExecute="60"/>
    </sersync>
    <sersyncd settle="20ms" backoffMax="10m"/>
</head>
`, tt.a, tt.bSection(), port, e.dir)), 0o644))
	return tt
}

// converge waits until each target equals its own tree byte for byte,
// apart from what that tree's filter excludes, which must be absent.
func (tt *twoTrees) converge(timeout time.Duration, what string) {
	tt.t.Helper()
	for _, c := range []struct {
		src      string
		d        *testutil.Daemon
		excluded string // the suffix of the names the tree's filter excludes
	}{
		{tt.a, tt.a0, ".tmp"},
		{tt.a, tt.a1, ".tmp"},
		{tt.b, tt.b0, ".log"},
	} {
		deadline := time.Now().Add(timeout)
		for {
			var diff []string
			for _, line := range testutil.DiffTrees(c.src, c.d.Dir) {
				if !strings.HasSuffix(line, c.excluded+`": only in src (file)`) {
					diff = append(diff, line)
				}
			}
			// Excluded: on no target of the tree.
			_ = filepath.WalkDir(c.d.Dir, func(p string, _ os.DirEntry, err error) error {
				if err == nil && strings.HasSuffix(p, c.excluded) {
					diff = append(diff, p+": excluded, yet on the target")
				}
				return nil
			})
			if len(diff) == 0 {
				break
			}
			if time.Now().After(deadline) {
				tt.t.Fatalf("%s: %s differs from %s:\n%s\n--- sersyncd output:\n%s", what, c.d.Module, c.src, strings.Join(diff, "\n"), tail(tt.proc.Output(), 4000))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// check runs sersyncd check on the config.
func (tt *twoTrees) check(args ...string) (int, string) {
	tt.t.Helper()
	cmd := exec.Command(tt.bin, append([]string{"check", "-o", tt.config}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		tt.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// write makes a file in a tree.
func write(t *testing.T, root, rel, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(filepath.Join(root, rel)), 0o755))
	must(t, os.WriteFile(filepath.Join(root, rel), []byte(content), 0o644))
}

// TestSeveralSourceTrees: one daemon, one queue file, two trees, each
// pushed only to its own targets with its own filter, relative to its own
// root: a full push at start, live changes in both, status and metrics
// naming the tree, and retry --source replaying one tree's targets only.
func TestSeveralSourceTrees(t *testing.T) {
	testutil.Integration(t)
	tt := newTwoTrees(t)
	// Before the start: pushed by -r, each tree to its own targets.
	for _, root := range []string{tt.a, tt.b} {
		name := filepath.Base(root)
		write(t, root, "same.txt", "the same name in "+name)
		write(t, root, "sub/deep/f", "deep in "+name)
		write(t, root, "x.tmp", "tmp in "+name)
		write(t, root, "x.log", "log in "+name)
	}
	write(t, tt.a, "only-in-a", "a")
	write(t, tt.b, "only-in-b", "b")

	code, out := tt.check()
	if code != 0 {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	wantCheck := regexp.MustCompile(`(?s)localpath: ` + regexp.QuoteMeta(tt.a) + `\ntarget:    127\.0\.0\.1::a0\n.*target:    127\.0\.0\.2::a1\n.*localpath: ` +
		regexp.QuoteMeta(tt.b) + `\n  excludes:  "\(\.\*\)\\\\\.log" \(its own <filter>.*\ntarget:    127\.0\.0\.3::b0\n`)
	if !wantCheck.MatchString(out) {
		t.Errorf("check does not print each tree with its targets and own filter:\n%s", out)
	}
	if code, out := tt.check("--path", filepath.Join(tt.b, "x.log"), "--path", filepath.Join(tt.a, "x.log")); code != 0 ||
		!strings.Contains(out, `"x.log": excluded by <exclude expression="(.*)\.log">`) || !strings.Contains(out, `"x.log": pushed`) {
		t.Errorf("check --path, B's x.log excluded by its own filter, A's pushed: exit %d\n%s", code, out)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	tt.start("-r", "--metrics", addr)
	tt.converge(15*time.Second, "full push at start")

	// Live changes in both trees.
	for _, root := range []string{tt.a, tt.b} {
		name := filepath.Base(root)
		write(t, root, "same.txt", "changed in "+name)
		write(t, root, "new/dir/g", "new in "+name)
		write(t, root, "new/y.tmp", "tmp in "+name)
		write(t, root, "new/y.log", "log in "+name)
		must(t, os.RemoveAll(filepath.Join(root, "sub")))
	}
	must(t, os.Rename(filepath.Join(tt.a, "only-in-a"), filepath.Join(tt.a, "moved-in-a")))
	tt.converge(15*time.Second, "live changes")
	for _, d := range []*testutil.Daemon{tt.a0, tt.a1} {
		if _, err := os.Lstat(filepath.Join(d.Dir, "only-in-b")); err == nil {
			t.Fatalf("tree B's file reached %s, a target of tree A", d.Module)
		}
	}
	for _, p := range []string{"moved-in-a", "only-in-a"} {
		if _, err := os.Lstat(filepath.Join(tt.b0.Dir, p)); err == nil {
			t.Fatalf("tree A's %s reached b0, tree B's target", p)
		}
	}

	// status names each target's tree.
	st := tt.status()
	if len(st.Sources) != 2 || st.Sources[0].Path != tt.a || st.Sources[1].Path != tt.b || st.Sources[0].WatchedDirs < 3 {
		t.Errorf("status sources = %+v", st.Sources)
	}
	for module, root := range map[string]string{"a0": tt.a, "a1": tt.a, "b0": tt.b} {
		if ts := targetStatus(t, st, module); ts.Source != root {
			t.Errorf("status: target %s has source %q, want %q", ts.Name, ts.Source, root)
		}
	}
	code, out = tt.tool("status")
	wantStatus := regexp.MustCompile(`(?s)source:  ` + regexp.QuoteMeta(tt.a) + `, \d+ watched directories\ntarget:  127\.0\.0\.1::a0\n.*target:  127\.0\.0\.2::a1\n.*source:  ` +
		regexp.QuoteMeta(tt.b) + `, \d+ watched directories\ntarget:  127\.0\.0\.3::b0\n`)
	if code != 0 || !wantStatus.MatchString(out) {
		t.Errorf("status text does not head each tree's targets with it: exit %d\n%s", code, out)
	}
	_, body := httpGet(t, "http://"+addr+"/metrics")
	for module, root := range map[string]string{"a0": tt.a, "b0": tt.b} {
		if v := metricValue(t, body, "sersyncd_pushes_total", `source="`+root+`"`, "::"+module+`"`, `exit="0"`); v < 1 {
			t.Errorf("sersyncd_pushes_total of %s with source %s = %v", module, root, v)
		}
		metricValue(t, body, "sersyncd_pending_paths", `source="`+root+`"`, "::"+module+`"`)
	}

	// retry --source: a1 (tree A) and b0 (tree B) down, changes in both;
	// b0 back, then retry --source B replays b0 alone: a1, still down,
	// would make it fail.
	tt.a1.Stop()
	tt.b0.Stop()
	write(t, tt.a, "while-down", "a")
	write(t, tt.b, "while-down", "b")
	waitFailed(t, tt.env, "a1")
	waitFailed(t, tt.env, "b0")
	tt.b0.Start()
	code, out = tt.tool("retry", "--source", tt.b+"/")
	if code != 0 || !strings.Contains(out, "127.0.0.3::b0: replayed") || strings.Contains(out, "::a") {
		t.Fatalf("retry --source %s: exit %d, want 0 and b0 alone:\n%s", tt.b, code, out)
	}
	if code, out := tt.tool("retry", "--source", tt.a, "--target", "127.0.0.3::b0"); code != 2 || !strings.Contains(out, "is not a target of --source") {
		t.Errorf("retry --source A --target b0: exit %d, want 2:\n%s", code, out)
	}
	if code, out := tt.tool("retry", "--source", filepath.Join(tt.a, "sub")); code != 2 || !strings.Contains(out, "not a <localpath watch>") {
		t.Errorf("retry --source of a directory inside a tree: exit %d, want 2:\n%s", code, out)
	}
	tt.a1.Start()
	code, out = tt.tool("retry", "--source", tt.a)
	if code != 0 || !strings.Contains(out, "127.0.0.1::a0: replayed") || !strings.Contains(out, "127.0.0.2::a1: replayed") || strings.Contains(out, "::b0") {
		t.Fatalf("retry --source %s: exit %d, want 0 and a0, a1:\n%s", tt.a, code, out)
	}
	tt.converge(15*time.Second, "after retry --source")
}

// TestReloadAddsAndRemovesTrees: SIGHUP starts watching a tree added to
// the config (before the old watchers stop) and stops watching a removed
// one; a reload that would move a target to another tree is refused, the
// running config kept.
func TestReloadAddsAndRemovesTrees(t *testing.T) {
	testutil.Integration(t)
	tt := newTwoTrees(t)
	tt.editConfig(tt.bSection(), "")
	p := tt.start()
	write(t, tt.a, "a1.txt", "before")
	write(t, tt.b, "b1.txt", "not watched yet")
	testutil.WaitConverged(t, tt.a, tt.a0.Dir, 10*time.Second, "tree A before the reload")
	if _, err := os.Lstat(filepath.Join(tt.b0.Dir, "b1.txt")); err == nil {
		t.Fatal("tree B pushed before it was in the config")
	}

	reload := func(want string) {
		t.Helper()
		n := strings.Count(p.Output(), want)
		must(t, p.Signal(syscall.SIGHUP))
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(p.Output(), want) == n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q after SIGHUP:\n%s", want, tail(p.Output(), 4000))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tt.editConfig("\t<rsync>", tt.bSection()+"\n\t<rsync>")
	reload("config reloaded")
	if !strings.Contains(p.Output(), "watching "+tt.b) {
		t.Fatalf("the added tree is not watched:\n%s", tail(p.Output(), 4000))
	}
	// b1.txt was written before B was watched: the reload pushes a new
	// tree whole.
	write(t, tt.b, "b2.txt", "after the reload")
	write(t, tt.b, "x.log", "excluded by B's own filter")
	write(t, tt.a, "a2.txt", "after the reload")
	deadline := time.Now().Add(10 * time.Second)
	for _, want := range []string{filepath.Join(tt.b0.Dir, "b1.txt"), filepath.Join(tt.b0.Dir, "b2.txt"), filepath.Join(tt.a0.Dir, "a2.txt"), filepath.Join(tt.a1.Dir, "a2.txt")} {
		for {
			if _, err := os.Lstat(want); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not pushed after the reload:\n%s", want, tail(p.Output(), 4000))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := os.Lstat(filepath.Join(tt.b0.Dir, "x.log")); err == nil {
		t.Fatal("x.log, excluded by tree B's own filter, reached b0")
	}

	// a1 moved from tree A to tree B: refused, the running config stays.
	tt.editConfig(`<remote ip="127.0.0.2" name="a1"/>`, "", `<remote ip="127.0.0.3" name="b0"/>`, `<remote ip="127.0.0.3" name="b0"/><remote ip="127.0.0.2" name="a1"/>`)
	reload("keeping the running config")
	if !strings.Contains(p.Output(), "target 127.0.0.2::a1 is pushed from "+tt.a+" and the new config pushes it from "+tt.b) {
		t.Fatalf("the refusal does not say which target moved:\n%s", tail(p.Output(), 4000))
	}
	write(t, tt.a, "a3.txt", "after the refused reload")
	testutil.WaitConverged(t, tt.a, tt.a1.Dir, 10*time.Second, "a1 still pushed from tree A")

	// Tree B removed: its changes are no longer pushed.
	tt.editConfig(`<remote ip="127.0.0.3" name="b0"/><remote ip="127.0.0.2" name="a1"/>`, `<remote ip="127.0.0.3" name="b0"/>`, `<remote ip="127.0.0.1" name="a0"/>`, `<remote ip="127.0.0.1" name="a0"/><remote ip="127.0.0.2" name="a1"/>`)
	tt.editConfig(tt.bSection(), "")
	reload("config reloaded")
	write(t, tt.b, "b3.txt", "after B was removed")
	write(t, tt.a, "a4.txt", "after B was removed")
	testutil.WaitConverged(t, tt.a, tt.a0.Dir, 10*time.Second, "tree A after B was removed")
	if _, err := os.Lstat(filepath.Join(tt.b0.Dir, "b3.txt")); err == nil {
		t.Fatal("tree B still pushed after it left the config")
	}
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v:\n%s", code, err, p.Output())
	}
}

// TestVerifySeveralTrees: sersyncd verify compares each target with its
// own tree, under that tree's filter: equal after the full push, and a
// file removed from one tree's target is drift of that target alone.
func TestVerifySeveralTrees(t *testing.T) {
	testutil.Integration(t)
	tt := newTwoTrees(t)
	for _, root := range []string{tt.a, tt.b} {
		write(t, root, "same.txt", "the same name in "+filepath.Base(root))
		write(t, root, "x.tmp", "tmp")
		write(t, root, "x.log", "log")
		write(t, root, "only-in-"+filepath.Base(root), "only there")
	}
	tt.start("-r")
	tt.converge(15*time.Second, "full push at start")
	verify := func() (int, string) {
		out, err := exec.Command(tt.bin, "verify", "-o", tt.config, "--db", tt.db).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		code := 0
		if ee != nil {
			code = ee.ExitCode()
		}
		return code, string(out)
	}
	if code, out := verify(); code != 0 {
		t.Fatalf("verify after the full push: exit %d, want 0 (each target equal to its own tree):\n%s", code, out)
	}
	must(t, os.Remove(filepath.Join(tt.b0.Dir, "same.txt")))
	code, out := verify()
	if code != 1 || !strings.Contains(out, "127.0.0.3::b0") || !strings.Contains(out, "same.txt") {
		t.Fatalf("verify with same.txt gone from b0: exit %d, want 1 naming b0 and same.txt:\n%s", code, out)
	}
}

// TestOverflowInOneTree: a kernel event queue of 16 overflows under a
// flood of 4,000 files in tree A; the full push that makes up for it goes
// to A's targets alone, while B's target only gets B's own change. (16,
// not 64: the reader sometimes kept up with a queue of 64, and nothing
// overflowed.)
func TestOverflowInOneTree(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	tt := newTwoTrees(t)
	restore := setSysctl(t, "/proc/sys/fs/inotify/max_queued_events", 16)
	p := tt.start()
	restore()
	for i := 0; i < 40; i++ {
		for j := 0; j < 100; j++ {
			write(t, tt.a, fmt.Sprintf("flood/d%02d/f%03d", i, j), fmt.Sprint(i, j))
		}
	}
	write(t, tt.b, "quiet.txt", "one change in tree B")
	tt.converge(30*time.Second, "after the overflow in tree A")
	out := p.Output()
	if !strings.Contains(out, "overflowed") {
		t.Fatalf("no overflow logged: the flood did not overflow a queue of 16:\n%s", tail(out, 4000))
	}
	var fullA, fullB int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "full push started") {
			if strings.Contains(line, "127.0.0.3::b0") {
				fullB++
			} else {
				fullA++
			}
		}
	}
	if fullA == 0 || fullB != 0 {
		t.Fatalf("full pushes: %d of tree A's targets, %d of tree B's; want some of A's and none of B's:\n%s", fullA, fullB, tail(out, 4000))
	}
	// The mark goes with the ack of the last full push, which may follow
	// the copy by a moment.
	deadline := time.Now().Add(10 * time.Second)
	for st := tt.status(); st.Missed != ""; st = tt.status() {
		if time.Now().After(deadline) {
			t.Fatalf("status still owes a full push after every target of tree A made it: %q", st.Missed)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
