package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestRsyncBinaryAttribute runs the daemon, its -r, a live push and an
// offline `retry` with <sersyncd rsync> naming a wrapper script and no
// rsync on PATH: every push must go through the wrapper, and the target
// must equal the source byte for byte.
func TestRsyncBinaryAttribute(t *testing.T) {
	testutil.Integration(t)
	real, err := exec.LookPath("rsync")
	if err != nil {
		t.Skip("rsync not installed")
	}
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	wrapper := filepath.Join(bin, "my rsync") // a space: the path is never split
	script := "#!/bin/sh\necho called >> '" + calls + "'\nexec '" + real + "' \"$@\"\n"
	must(t, os.WriteFile(wrapper, []byte(script), 0o755))
	e := newEnv(t, envOptions{targets: 1, backoffMax: "10m", rsyncBinary: wrapper})
	target := e.targets[0]

	// sersyncd's processes see a PATH without rsync: a push that ignored the
	// attribute would fail. The rsync daemons keep the real PATH.
	t.Setenv("PATH", os.Getenv("PATH"))
	realPath, noRsync := os.Getenv("PATH"), t.TempDir()
	withoutRsync := func(fn func()) {
		t.Helper()
		must(t, os.Setenv("PATH", noRsync))
		defer os.Setenv("PATH", realPath)
		fn()
	}
	count := func() int {
		data, err := os.ReadFile(calls)
		if os.IsNotExist(err) {
			return 0
		}
		must(t, err)
		return strings.Count(string(data), "called\n")
	}

	withoutRsync(func() {
		out, err := exec.Command(e.bin, "check", "-o", e.config).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "\n  changes:   \""+wrapper+"\" -artuz ") {
			t.Fatalf("check (%v) does not show the wrapper's command line:\n%s", err, out)
		}
	})

	e.write("before.txt", "there before the start\n")
	withoutRsync(func() { e.start("-r") })
	e.write("live.txt", "written while it runs\n")
	e.converge(20*time.Second, "-r and a live push through the wrapper")
	if n := count(); n < 2 {
		t.Fatalf("the wrapper ran %d times for -r and a live push", n)
	}

	// A failure, replayed by an offline `sersyncd retry`.
	target.Stop()
	e.write("while-down.txt", "written while the target was down\n")
	waitFailed(t, e, target.Module)
	must(t, e.proc.Signal(syscall.SIGTERM))
	if code, err := e.proc.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: exit %d %v", code, err)
	}
	target.Start()
	before := count()
	withoutRsync(func() {
		if code, out := e.tool("retry"); code != 0 {
			t.Fatalf("offline retry exit %d:\n%s", code, out)
		}
	})
	e.proc = nil
	e.converge(time.Second, "offline retry through the wrapper")
	if count() == before {
		t.Fatal("the offline retry did not run the wrapper")
	}
}
