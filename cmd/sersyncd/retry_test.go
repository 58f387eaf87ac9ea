package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/status"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// tool runs `sersyncd <sub> -o CONF --db DB args...` and returns its exit
// code and output.
func (e *env) tool(sub string, args ...string) (int, string) {
	e.t.Helper()
	argv := append([]string{sub, "-o", e.config, "--db", e.db}, args...)
	cmd := exec.Command(e.bin, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return code, out.String()
}

// waitClean waits, up to within, until the target whose module is module
// ("": the first target) has nothing pending and nothing failing.
func (e *env) waitClean(within time.Duration, module, what string) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.status()
		ts := st.Targets[0]
		if module != "" {
			ts = targetStatus(e.t, st, module)
		}
		if ts.Failed == 0 && ts.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %+v", what, ts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *env) status() *control.Status {
	e.t.Helper()
	code, out := e.tool("status", "--json")
	if code != 0 {
		e.t.Fatalf("status exit %d: %s", code, out)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &st
}

func targetStatus(t *testing.T, st *control.Status, module string) status.Target {
	t.Helper()
	for _, ts := range st.Targets {
		if strings.HasSuffix(ts.Name, "::"+module) {
			return ts
		}
	}
	t.Fatalf("no target %s in status %+v", module, st)
	return status.Target{}
}

// burst makes 2,000 files, deletes and renames some.
func burst(t *testing.T, e *env) {
	for d := 0; d < 20; d++ {
		must(t, os.MkdirAll(e.path(fmt.Sprintf("b%02d", d)), 0o755))
		for i := 0; i < 100; i++ {
			e.write(fmt.Sprintf("b%02d/f%03d", d, i), fmt.Sprintf("%d/%d", d, i))
		}
	}
	for i := 0; i < 100; i += 3 {
		must(t, os.Remove(e.path(fmt.Sprintf("b00/f%03d", i))))
	}
	must(t, os.Rename(e.path("b01"), e.path("renamed")))
	must(t, os.Rename(e.path("b02/f000"), e.path("b02/moved")))
}

func waitFailed(t *testing.T, e *env, module string) status.Target {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ts := targetStatus(t, e.status(), module)
		if ts.Failed > 0 {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure records for the stopped target: %+v\n%s", ts, e.proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRetryConvergesStoppedTarget(t *testing.T) {
	testutil.Integration(t)
	// A long backoff: only `sersyncd retry` can bring the target back soon.
	e := newEnv(t, envOptions{targets: 3, backoffMax: "10m"})
	e.start()
	down := e.targets[2]
	down.Stop()
	burst(t, e)
	for _, d := range e.targets[:2] {
		testutil.WaitConverged(t, e.src, d.Dir, 30*time.Second, "live target %s", d.Module)
	}
	ts := waitFailed(t, e, down.Module)
	if ts.Pending < ts.Failed || ts.LastError == "" {
		t.Fatalf("status of the stopped target: %+v", ts)
	}
	if live := targetStatus(t, e.status(), e.targets[0].Module); live.Failed != 0 {
		t.Fatalf("a live target has failures: %+v", live)
	}
	code, out := e.tool("retry")
	if code != 1 || !strings.Contains(out, "still failing") {
		t.Fatalf("retry while the target is down: exit %d, want 1:\n%s", code, out)
	}
	down.Start()
	code, out = e.tool("retry")
	if code != 0 {
		t.Fatalf("retry exit %d:\n%s\n%s", code, out, e.proc.Output())
	}
	e.converge(30*time.Second, "after retry")
	e.waitClean(10*time.Second, down.Module, "status after retry")
}

func TestTimedReplayConvergesStoppedTarget(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2, backoffMax: "10m", failLogEvery: "1s"})
	e.start()
	down := e.targets[1]
	down.Stop()
	burst(t, e)
	testutil.WaitConverged(t, e.src, e.targets[0].Dir, 30*time.Second)
	waitFailed(t, e, down.Module)
	down.Start()
	e.converge(30*time.Second, "after the timed replay")
	if !strings.Contains(e.proc.Output(), "timed replay") {
		t.Fatalf("no timed replay logged:\n%s", e.proc.Output())
	}
}

func TestWrongPasswordThenFixed(t *testing.T) {
	testutil.Integration(t)
	pw := filepath.Join(t.TempDir(), "rsync.pas")
	must(t, os.WriteFile(pw, []byte("wrong\n"), 0o600))
	e := newEnv(t, envOptions{targets: 1, backoffMax: "10m", authUser: "alice", passwordFile: pw,
		secrets: map[string]string{"alice": "s3cret"}})
	e.start()
	e.write("f", "content")
	ts := waitFailed(t, e, e.targets[0].Module)
	if !strings.Contains(ts.LastError, "auth") {
		t.Fatalf("the failure does not say authentication failed: %q", ts.LastError)
	}
	must(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	if code, out := e.tool("retry"); code != 0 {
		t.Fatalf("retry exit %d:\n%s", code, out)
	}
	e.converge(10*time.Second, "after fixing the password")
}

// TestRetryAndStatusWithoutDaemon: the tools open the queue file themselves
// when no daemon runs, and leave the unclean-stop marker alone.
func TestRetryAndStatusWithoutDaemon(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2, backoffMax: "10m"})
	p := e.start()
	down := e.targets[1]
	down.Stop()
	hostile := []string{"$(touch pwned1)", ";touch pwned2;", "`touch pwned3`", "new\nline"}
	for _, name := range hostile {
		e.write(name, name)
	}
	waitFailed(t, e, down.Module)
	testutil.WaitConverged(t, e.src, e.targets[0].Dir, 10*time.Second, "live target")
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: exit %d %v", code, err)
	}
	// The backoff may hold back what came after the first failed batch:
	// every path is pending, at least one has failed.
	st := e.status()
	if ts := targetStatus(t, st, down.Module); st.Running || ts.Pending != len(hostile) || ts.Failed < 1 {
		t.Fatalf("offline status: %+v", st)
	}
	_, text := e.tool("status")
	if !strings.Contains(text, "not running") || !strings.Contains(text, "pending 4") {
		t.Fatalf("offline status text:\n%s", text)
	}
	// An offline replay while the target is still down fails every path,
	// and says so.
	if code, out := e.tool("retry"); code != 1 || !strings.Contains(out, "still failing 4") {
		t.Fatalf("offline retry with the target down: exit %d:\n%s", code, out)
	}
	// The failLog names every path, and running it as a script does nothing.
	log, err := os.ReadFile(filepath.Join(e.dir, "fail.log"))
	must(t, err)
	if !strings.Contains(string(log), `"\x24(touch pwned1)"`) {
		t.Fatalf("failLog lacks the quoted name:\n%s", log)
	}
	sh := exec.Command("sh", filepath.Join(e.dir, "fail.log"))
	sh.Dir = e.dir
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("sh failLog: %v: %s", err, out)
	}
	down.Start()
	if code, out := e.tool("retry"); code != 0 {
		t.Fatalf("offline retry exit %d:\n%s", code, out)
	}
	for _, d := range e.targets {
		testutil.WaitConverged(t, e.src, d.Dir, time.Second, "offline retry to %s", d.Module)
	}
	for _, dir := range []string{e.dir, e.src, "."} {
		for i := 1; i <= 3; i++ {
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("pwned%d", i))); err == nil {
				t.Fatalf("a file name ran as a command: %s/pwned%d exists", dir, i)
			}
		}
	}
	// The offline tools must not have marked the queue clean or unclean.
	e.start()
	if strings.Contains(e.proc.Output(), "did not stop cleanly") {
		t.Fatalf("the offline tools disturbed the clean-stop marker:\n%s", e.proc.Output())
	}
}

func TestCrontabRepairsTargetChangedBehindOurBack(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1, crontabEvery: "1s", crontabExcludes: []string{"*.php", "info/*"}})
	e.write("keep.txt", "original")
	e.write("x.php", "php on the source")
	e.start("-r")
	d := e.targets[0]
	waitFile(t, filepath.Join(d.Dir, "keep.txt"), "original")
	// Edited on the target behind sersyncd's back; also a php file there
	// that the crontab filter protects.
	must(t, os.WriteFile(filepath.Join(d.Dir, "keep.txt"), []byte("tampered"), 0o644))
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(filepath.Join(d.Dir, "keep.txt"), old, old))
	must(t, os.WriteFile(filepath.Join(d.Dir, "target-only.php"), []byte("kept"), 0o644))
	waitFile(t, filepath.Join(d.Dir, "keep.txt"), "original")
	if _, err := os.Stat(filepath.Join(d.Dir, "target-only.php")); err != nil {
		t.Fatalf("the crontab filter did not protect target-only.php: %v", err)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q (%v), want %q", path, b, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestToolsOnALockedQueueSayWhy: a queue file held by a process that does
// not answer on the socket gets one clear line, not a hang.
func TestToolsOnALockedQueueSayWhy(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1})
	db, err := bolt.Open(e.db, 0o600, nil)
	must(t, err)
	defer db.Close()
	for _, sub := range []string{"status", "retry"} {
		start := time.Now()
		code, out := e.tool(sub)
		if code != 1 || !strings.Contains(out, "locked by another process") || strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Fatalf("%s on a locked queue: exit %d:\n%s", sub, code, out)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("%s took %s", sub, took)
		}
	}
}

func TestDetachWritesPidAndLog(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1})
	pidFile := filepath.Join(e.dir, "run", "sersyncd.pid")
	logFile := filepath.Join(e.dir, "log", "sersyncd.log")
	cmd := exec.Command(e.bin, "-d", "-o", e.config, "--db", e.db, "--pid-file", pidFile, "--log-file", logFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sersyncd -d: %v\n%s", err, out)
	}
	b, err := os.ReadFile(pidFile)
	must(t, err)
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		t.Fatalf("pid file %q", b)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	e.write("detached", "arrives")
	e.converge(10*time.Second, "detached daemon")
	must(t, syscall.Kill(pid, syscall.SIGTERM))
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the detached daemon did not stop on SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	logText, err := os.ReadFile(logFile)
	must(t, err)
	if !strings.Contains(string(logText), "sersyncd stopped") {
		t.Fatalf("log file:\n%s", logText)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Fatal("pid file left behind after a clean stop")
	}
}

// TestControlSocketRefusesOtherUsers: the socket is 0600 and the daemon
// checks the peer's uid, so another user learns nothing and can replay nothing.
func TestControlSocketRefusesOtherUsers(t *testing.T) {
	testutil.Integration(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	e := newEnv(t, envOptions{targets: 1})
	e.start()
	fi, err := os.Stat(control.SocketPath(e.db))
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, want 0600", fi.Mode().Perm())
	}
	// The binary and config must be reachable by nobody; the queue is not.
	must(t, os.Chmod(e.dir, 0o755))
	must(t, os.Chmod(filepath.Dir(e.bin), 0o755))
	for _, sub := range []string{"status", "retry"} {
		cmd := exec.Command(e.bin, sub, "-o", e.config, "--db", e.db)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "permission denied") {
			t.Fatalf("%s as nobody: %v\n%s", sub, err, out)
		}
		if strings.Contains(string(out), "pending") {
			t.Fatalf("%s as nobody showed the queue:\n%s", sub, out)
		}
	}
}
