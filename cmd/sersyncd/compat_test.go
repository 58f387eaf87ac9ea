package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// sersync's stock expressions, and what sersync 2.5 did with each path
// (boost::regex_match on the path forms Inotify.cpp builds): the
// compatibility issue's users found a.gzip and information.txt missing from
// their backups when the expressions were searched for anywhere.
var (
	stockExcludes = []string{`(.*)\.svn`, `(.*)\.gz`, `^info/*`, `^static/*`}
	stockPushed   = []string{"a.gzip", "information.txt", "logs/a.gz.txt", "sub/info/y", "sub/static.txt", "svn.txt", "repo/README"}
	stockExcluded = []string{"a.gz", "logs/b.gz", "info/x", "info/deep/z", "static/css/s.css", "repo/.svn/entries", "x.svn"}
)

// stockIgnore is what the comparison skips: the excluded paths, exactly (a
// prefix "info" would also hide information.txt).
var stockIgnore = []string{`a.gz"`, `logs/b.gz"`, `info"`, `info/`, `static"`, `static/`, `repo/.svn"`, `repo/.svn/`, `x.svn"`}

func writeStockTree(t *testing.T, e *env, content string) {
	t.Helper()
	for _, p := range append(append([]string{}, stockPushed...), stockExcluded...) {
		must(t, os.MkdirAll(filepath.Dir(e.path(p)), 0o755))
		e.write(p, content+" "+p)
	}
}

func assertStockExcludedAbsent(t *testing.T, e *env, when string) {
	t.Helper()
	for _, d := range e.targets {
		for _, p := range []string{"a.gz", "logs/b.gz", "info", "static", "repo/.svn", "x.svn"} {
			if _, err := os.Lstat(filepath.Join(d.Dir, p)); err == nil {
				t.Fatalf("%s: excluded %s reached target %s", when, p, d.Module)
			}
		}
	}
}

// TestSersyncFilterMeaning turns sersync's stock expressions on and checks
// that exactly what sersync replicated arrives: at start (-r, the full
// push), live, and by the crontab push.
func TestSersyncFilterMeaning(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2, excludes: stockExcludes})
	e.ignore = stockIgnore
	writeStockTree(t, e, "before start")
	e.start("-r")
	e.converge(20*time.Second, "full push with the stock filter")
	assertStockExcludedAbsent(t, e, "full push")

	// Live: everything removed, then made again with other contents.
	for _, p := range []string{"a.gzip", "information.txt", "logs", "sub", "svn.txt", "repo", "a.gz", "info", "static", "x.svn"} {
		must(t, os.RemoveAll(e.path(p)))
	}
	e.converge(20*time.Second, "removals with the stock filter")
	writeStockTree(t, e, "live")
	e.converge(20*time.Second, "live changes with the stock filter")
	assertStockExcludedAbsent(t, e, "live")
	for _, d := range e.targets {
		got, err := os.ReadFile(filepath.Join(d.Dir, "a.gzip"))
		if err != nil || string(got) != "live a.gzip" {
			t.Fatalf("a.gzip on %s: %q, %v", d.Module, got, err)
		}
	}
}

// TestCheckPathNamesTheExpression is `sersyncd check --path`, which a
// migrating user runs on the expressions they rely on.
func TestCheckPathNamesTheExpression(t *testing.T) {
	bin := testutil.BuildBinary(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	must(t, os.MkdirAll(filepath.Join(src, "cache"), 0o755))
	conf := filepath.Join(dir, "confxml.xml")
	must(t, os.WriteFile(conf, []byte(`<head version="2.5">
<filter start="true">
	<exclude expression="(.*)\.gz"></exclude>
	<exclude expression="^info/*"></exclude>
	<exclude expression="^cache/.*"></exclude>
</filter>
<sersync><localpath watch="`+src+`"><remote ip="127.0.0.1" name="m"/></localpath></sersync>
</head>`), 0o644))
	cases := []struct {
		name, path, want string
	}{
		{"suffix", "logs/a.gz", `"logs/a.gz": excluded by <exclude expression="(.*)\.gz"> (` + conf + `:3), which matches "logs/a.gz"`},
		{"suffix is not a substring", "a.gzip", `"a.gzip": pushed`},
		{"below an excluded directory", "info/x/y", `"info/x/y": excluded by <exclude expression="^info/*"> (` + conf + `:4), which matches "info"`},
		{"anchored name is not a prefix", "information.txt", `"information.txt": pushed`},
		{"existing directory, slash form", "cache", `"cache": excluded by <exclude expression="^cache/.*"> (` + conf + `:5), which matches "cache/"`},
		{"absolute path", filepath.Join(src, "b.gz"), `"b.gz": excluded by <exclude expression="(.*)\.gz"> (` + conf + `:3), which matches "b.gz"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testutil.StartProcess(t, bin, "check", "-o", conf, "--path", tc.path)
			code, err := p.Wait(10 * time.Second)
			if err != nil || code != 0 || strings.TrimSpace(p.Output()) != tc.want {
				t.Fatalf("exit %d, %v:\n%s\nwant:\n%s", code, err, p.Output(), tc.want)
			}
		})
	}
	p := testutil.StartProcess(t, bin, "check", "-o", conf, "--path", "/etc/passwd")
	if code, _ := p.Wait(10 * time.Second); code != 2 || !strings.Contains(p.Output(), "not below localpath") {
		t.Fatalf("a path outside the tree: exit %d:\n%s", code, p.Output())
	}
}

// keptOnTargets checks that every target still holds each rel with want.
func keptOnTargets(t *testing.T, e *env, want map[string]string, what string) {
	t.Helper()
	for _, d := range e.targets {
		for rel, content := range want {
			got, err := os.ReadFile(filepath.Join(d.Dir, rel))
			if err != nil || string(got) != content {
				t.Fatalf("%s: %s on %s: %q, %v; want %q kept (delete is off)", what, rel, d.Module, got, err, content)
			}
		}
	}
}

// archiveEnv is an env with <delete start="false"> whose targets already hold
// files the source does not have (deleted while sersyncd was stopped, or
// long ago): an archive.
func archiveEnv(t *testing.T, o envOptions) (*env, map[string]string) {
	o.keepDeleted = true
	e := newEnv(t, o)
	kept := map[string]string{"archived.txt": "old", "old/dir/deep.txt": "older"}
	for _, d := range e.targets {
		for rel, content := range kept {
			must(t, os.MkdirAll(filepath.Dir(filepath.Join(d.Dir, rel)), 0o755))
			must(t, os.WriteFile(filepath.Join(d.Dir, rel), []byte(content), 0o644))
		}
	}
	e.ignore = []string{`archived.txt"`, `old"`, `old/`}
	return e, kept
}

// TestDeleteOffNothingDeleted is <delete start="false">, an archive target,
// through every kind of push: live (a removal, a file changed and then
// removed before its push, a directory removed), the full push at start (-r),
// after an unclean stop, after an inotify overflow, the crontab push and
// `sersyncd retry`. Each must leave what the source removed on the targets.
func TestDeleteOffNothingDeleted(t *testing.T) {
	testutil.Integration(t)
	t.Run("live and -r", func(t *testing.T) {
		e, kept := archiveEnv(t, envOptions{targets: 2})
		e.write("a", "a1")
		must(t, os.MkdirAll(e.path("d/e"), 0o755))
		e.write("d/e/f", "f1")
		e.write("c", "c1")
		e.start("-r")
		e.converge(20*time.Second, "full push")
		keptOnTargets(t, e, kept, "-r")

		must(t, os.Remove(e.path("a")))
		must(t, os.RemoveAll(e.path("d")))
		// Changed, then removed before its push.
		e.write("c", "c2 longer")
		must(t, os.Remove(e.path("c")))
		kept["a"], kept["d/e/f"], kept["c"] = "a1", "f1", "c1"
		e.ignore = append(e.ignore, `a"`, `c"`, `d"`, `d/`)
		// A later change that arrives proves the pushes after the removals ran.
		e.write("sentinel", "s")
		e.converge(20*time.Second, "live removals")
		time.Sleep(300 * time.Millisecond)
		keptOnTargets(t, e, kept, "live")
	})
	t.Run("unclean stop", func(t *testing.T) {
		e, kept := archiveEnv(t, envOptions{targets: 1})
		p := e.start()
		e.write("a", "a1")
		e.converge(20*time.Second, "first push")
		must(t, p.Signal(syscall.SIGKILL))
		_, _ = p.Wait(5 * time.Second)
		must(t, os.Remove(e.path("a")))
		kept["a"] = "a1"
		e.ignore = append(e.ignore, `a"`)
		e.write("b", "made while stopped")
		e.start()
		if !e.proc.WaitOutput("full push done", 20*time.Second) {
			t.Fatalf("no full push after the unclean stop:\n%s", e.proc.Output())
		}
		e.converge(20*time.Second, "after the unclean stop")
		keptOnTargets(t, e, kept, "unclean stop")
	})
	t.Run("overflow", func(t *testing.T) {
		onTmpfs(t)
		e, kept := archiveEnv(t, envOptions{targets: 1})
		restore := setSysctl(t, "/proc/sys/fs/inotify/max_queued_events", 64)
		p := e.start()
		restore()
		e.write("a", "a1")
		e.converge(20*time.Second, "first push")
		must(t, os.Remove(e.path("a")))
		kept["a"] = "a1"
		e.ignore = append(e.ignore, `a"`)
		for i := 0; i < 20; i++ {
			must(t, os.MkdirAll(e.path(fmt.Sprintf("flood/d%02d", i)), 0o755))
			for j := 0; j < 100; j++ {
				e.write(fmt.Sprintf("flood/d%02d/f%03d", i, j), fmt.Sprint(i, j))
			}
		}
		e.converge(30*time.Second, "after the overflow")
		if !strings.Contains(p.Output(), "overflowed") {
			t.Fatalf("the flood did not overflow a queue of 64: the test proves nothing:\n%s", tail(p.Output(), 3000))
		}
		if !p.WaitOutput("full push done", 20*time.Second) {
			t.Fatalf("no full push after the overflow:\n%s", tail(p.Output(), 3000))
		}
		keptOnTargets(t, e, kept, "overflow")
	})
	t.Run("crontab", func(t *testing.T) {
		e, kept := archiveEnv(t, envOptions{targets: 1, crontabEvery: "1s"})
		p := e.start()
		e.write("a", "a1")
		e.converge(20*time.Second, "first push")
		must(t, os.Remove(e.path("a")))
		kept["a"] = "a1"
		e.ignore = append(e.ignore, `a"`)
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(p.Output(), "crontab: full push") < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("the crontab push did not run twice:\n%s", tail(p.Output(), 3000))
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.converge(20*time.Second, "after crontab pushes")
		keptOnTargets(t, e, kept, "crontab")
	})
	t.Run("retry", func(t *testing.T) {
		e, kept := archiveEnv(t, envOptions{targets: 1, backoffMax: "10m"})
		e.start()
		e.write("a", "a1")
		e.converge(20*time.Second, "first push")
		down := e.targets[0]
		down.Stop()
		// Its push fails while the target is down; then it is removed.
		e.write("a", "a2, never pushed")
		waitFailed(t, e, down.Module)
		must(t, os.Remove(e.path("a")))
		kept["a"] = "a1"
		e.ignore = append(e.ignore, `a"`)
		down.Start()
		if code, out := e.tool("retry"); code != 0 {
			t.Fatalf("retry: exit %d:\n%s", code, out)
		}
		e.converge(20*time.Second, "after retry")
		keptOnTargets(t, e, kept, "retry")
	})
}

// TestFullPushKeepsExcludedTargetOnlyFiles: a full push leaves what the
// filter excludes alone on a target, also a path that only the target has
// (a backup's own file): rsync cannot be given the expressions, and a
// --delete pass that protected only the source's excluded paths removed it.
func TestFullPushKeepsExcludedTargetOnlyFiles(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1, excludes: []string{`(.*)\.swp`, `^local/*`}})
	e.write("a.txt", "source")
	d := e.targets[0]
	for rel, content := range map[string]string{
		"own.swp": "the target's own", "local/conf": "kept", "gone/x.swp": "kept too",
		"stale.txt": "deleted", "stale-dir/f": "deleted",
	} {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(d.Dir, rel)), 0o755))
		must(t, os.WriteFile(filepath.Join(d.Dir, rel), []byte(content), 0o644))
	}
	e.ignore = []string{`own.swp"`, `local"`, `local/`, `gone"`, `gone/`}
	e.start("-r")
	if !e.proc.WaitOutput("full push done", 20*time.Second) {
		t.Fatalf("no full push:\n%s", e.proc.Output())
	}
	e.converge(20*time.Second, "full push")
	for _, rel := range []string{"own.swp", "local/conf", "gone/x.swp"} {
		if _, err := os.Stat(filepath.Join(d.Dir, rel)); err != nil {
			t.Errorf("excluded %s, only on the target, was deleted: %v", rel, err)
		}
	}
}
