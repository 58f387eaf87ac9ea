package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// editConfig rewrites the test's confxml.xml with plain text replacements.
func (e *env) editConfig(replace ...string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	must(e.t, err)
	s := string(b)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			e.t.Fatalf("config has no %q", replace[i])
		}
		s = strings.Replace(s, replace[i], replace[i+1], 1)
	}
	must(e.t, os.WriteFile(e.config, []byte(s), 0o644))
}

func remoteLine(d *testutil.Daemon, ip string) string {
	return `<remote ip="` + ip + `" name="` + d.Module + `"/>`
}

func TestSIGHUPReloadsConfig(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 3})
	t0, t1, t2 := e.targets[0], e.targets[1], e.targets[2]
	e.editConfig(remoteLine(t2, "127.0.0.3"), "")
	p := e.start()
	e.write("a.txt", "before the reload")
	for _, d := range []*testutil.Daemon{t0, t1} {
		testutil.WaitConverged(t, e.src, d.Dir, 10*time.Second, "before reload: %s", d.Module)
	}

	// Remove t0, add t2, exclude *.tmp.
	e.editConfig(
		remoteLine(t0, "127.0.0.1"), remoteLine(t2, "127.0.0.3"),
		`<filter start="false">`, `<filter start="true"><exclude expression="(.*)\.tmp"></exclude>`)
	must(t, p.Signal(syscall.SIGHUP))
	if !p.WaitOutput("config reloaded", 10*time.Second) {
		t.Fatalf("no reload:\n%s", p.Output())
	}
	e.write("b.txt", "after the reload")
	e.write("c.tmp", "excluded now")
	e.targets = []*testutil.Daemon{t1, t2}
	e.ignore = []string{"c.tmp"}
	// t2 gets b.txt, and a.txt too: a changed filter means a full push.
	e.converge(15*time.Second, "after reload")
	for _, d := range e.targets {
		if _, err := os.Lstat(filepath.Join(d.Dir, "c.tmp")); err == nil {
			t.Fatalf("excluded c.tmp reached %s", d.Module)
		}
	}
	if _, err := os.Lstat(filepath.Join(t0.Dir, "b.txt")); err == nil {
		t.Fatal("the removed target still receives changes")
	}

	// An invalid config is refused; the running one goes on.
	must(t, os.WriteFile(e.config, []byte("<head><sersync>"), 0o644))
	must(t, p.Signal(syscall.SIGHUP))
	if !p.WaitOutput("keeping the running config", 10*time.Second) {
		t.Fatalf("invalid config not reported:\n%s", p.Output())
	}
	e.write("d.txt", "after the failed reload")
	e.converge(10*time.Second, "after a refused reload")
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v:\n%s", code, err, p.Output())
	}
}
