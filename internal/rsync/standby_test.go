package rsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// standbyTarget is a target of d's module with a standby kept for keep.
func standbyTarget(t *testing.T, d *testutil.Daemon, keep time.Duration) (*Target, string) {
	t.Helper()
	src := t.TempDir()
	tgt := New(Options{Source: src, Dest: "127.0.0.1::" + d.Module, Port: d.Port, Params: []string{"-a"}, Standby: keep})
	t.Cleanup(func() { tgt.Close() })
	return tgt, src
}

// pushedOnce pushes file "a" (content) to a new daemon through a target
// that keeps a standby for keep, and returns the standby that push left.
func pushedOnce(t *testing.T, opts testutil.DaemonOptions, keep time.Duration, content string) (*testutil.Daemon, *Target, string, *rsyncProc) {
	t.Helper()
	d := testutil.StartDaemon(t, opts)
	tgt, src := standbyTarget(t, d, keep)
	write(t, src, "a", content)
	if err := push(t, tgt, "a"); err != nil {
		t.Fatal(err)
	}
	ready := tgt.standbyNow()
	if ready == nil || ready.exited() {
		t.Fatal("no rsync waiting after a push that succeeded")
	}
	return d, tgt, src, ready
}

func (t *Target) standbyNow() *rsyncProc {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.standby
}

func push(t *testing.T, tgt *Target, paths ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return tgt.Push(ctx, change.Of(paths))
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantFile(t *testing.T, dir, name, content string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || string(got) != content {
		t.Fatalf("%s on the target = %q (%v), want %q", name, got, err, content)
	}
}

func waitExited(t *testing.T, p *rsyncProc, what string) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: rsync %d still running", what, p.cmd.Process.Pid)
	}
}

func TestStandbyCarriesTheNextPush(t *testing.T) {
	d, tgt, src, ready := pushedOnce(t, testutil.DaemonOptions{}, time.Minute, "one")
	// Same size, same second: only the listed path and --ignore-times
	// get it across, through the rsync started before it was written.
	write(t, src, "a", "two")
	if err := push(t, tgt, "a"); err != nil {
		t.Fatal(err)
	}
	wantFile(t, d.Dir, "a", "two")
	if !ready.exited() || ready.waitErr != nil {
		t.Errorf("the waiting rsync did not carry the push (exited %v, %v)", ready.exited(), ready.waitErr)
	}
	if next := tgt.standbyNow(); next == nil || next == ready {
		t.Error("no new rsync waiting after the second push")
	}
}

func TestStandbyRetiresCleanlyWhenUnused(t *testing.T) {
	d, tgt, _, ready := pushedOnce(t, testutil.DaemonOptions{}, time.Second, "x")
	write(t, d.Dir, "kept", "only on the target")
	waitExited(t, ready, "an unused standby after its time")
	if ready.waitErr != nil {
		t.Errorf("the unused standby ended with %v, want a clean exit: %s", ready.waitErr, ready.stderr.String())
	}
	if tgt.standbyNow() != nil {
		t.Error("a standby is still kept after it was retired")
	}
	// Its empty list pushed nothing and deleted nothing.
	wantFile(t, d.Dir, "kept", "only on the target")
	wantFile(t, d.Dir, "a", "x")
	if errs := sessionErrors(d.Log()); len(errs) > 0 {
		t.Errorf("the daemon logged an error for a retired standby: %q\n%s", errs, d.Log())
	}
}

// sessionErrors are the daemon log's error lines of rsync sessions, those
// that were let into the module. A bare TCP connect that closes at once
// (another package's test probing a port this daemon reuses: go test runs
// packages in parallel) logs a "Connection reset" of its own, not ours.
func sessionErrors(log string) []string {
	pid := regexp.MustCompile(`\[(\d+)\]`)
	sessions := map[string]bool{}
	for _, l := range strings.Split(log, "\n") {
		if m := pid.FindStringSubmatch(l); m != nil && strings.Contains(l, "rsync allowed access") {
			sessions[m[1]] = true
		}
	}
	var errs []string
	for _, l := range strings.Split(log, "\n") {
		if m := pid.FindStringSubmatch(l); m != nil && sessions[m[1]] && strings.Contains(l, "error") {
			errs = append(errs, l)
		}
	}
	return errs
}

// A standby whose daemon went away (restarted; or its module "timeout"
// ended the wait) must not turn the next push into a failure.
func TestStandbyLostConnection(t *testing.T) {
	tests := []struct {
		name string
		opts testutil.DaemonOptions
		lose func(d *testutil.Daemon)
	}{
		{"daemon restarted", testutil.DaemonOptions{}, func(d *testutil.Daemon) { d.Start() }},
		{"module timeout", testutil.DaemonOptions{Timeout: 1}, func(*testutil.Daemon) { time.Sleep(2500 * time.Millisecond) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, tgt, src, _ := pushedOnce(t, tc.opts, time.Minute, "one")
			tc.lose(d)
			write(t, src, "a", "two")
			write(t, src, "b", "new")
			if err := push(t, tgt, "a", "b"); err != nil {
				t.Fatalf("push after the standby lost its connection: %v", err)
			}
			wantFile(t, d.Dir, "a", "two")
			wantFile(t, d.Dir, "b", "new")
		})
	}
}

func TestNoStandbyForAFailingTarget(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	tgt, src := standbyTarget(t, d, time.Minute)
	d.Stop()
	write(t, src, "a", "x")
	if err := push(t, tgt, "a"); err == nil {
		t.Fatal("push to a stopped daemon succeeded")
	}
	if p := tgt.standbyNow(); p != nil {
		t.Errorf("rsync %d kept waiting for a target that fails", p.cmd.Process.Pid)
	}
}

func TestCloseEndsTheStandby(t *testing.T) {
	d, tgt, src, ready := pushedOnce(t, testutil.DaemonOptions{}, time.Minute, "x")
	tgt.Close()
	waitExited(t, ready, "the standby after Close")
	if ready.waitErr != nil {
		t.Errorf("Close ended the standby with %v, want a clean exit", ready.waitErr)
	}
	write(t, src, "a", "y")
	if err := push(t, tgt, "a"); err != nil {
		t.Fatalf("push after Close: %v", err)
	}
	wantFile(t, d.Dir, "a", "y")
	if p := tgt.standbyNow(); p != nil {
		t.Errorf("rsync %d started after Close", p.cmd.Process.Pid)
	}
}

func TestLostConnection(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"success", nil, false},
		{"socket error", &ExitError{Code: 10}, true},
		{"stream cut", &ExitError{Code: 12}, true},
		{"ssh gone", &ExitError{Code: 255}, true},
		{"timeout: a fresh rsync would wait as long again", &ExitError{Code: 30}, false},
		{"partial transfer", &ExitError{Code: 23}, false},
		{"cancelled", context.Canceled, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := lostConnection(tc.err); got != tc.want {
				t.Errorf("lostConnection(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// A standby whose daemon died, maybe in the middle of a file, and a fresh
// rsync that then finds no daemon: the push's error carries the standby's
// lost connection, so the pool knows a temp file may be left on the target
// (a full push clears it), besides the refusal it reports.
func TestStandbyDiedAndTargetDown(t *testing.T) {
	d, tgt, src, _ := pushedOnce(t, testutil.DaemonOptions{}, time.Minute, "one")
	// The standby has connected (the push's connection and its own).
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(d.Log(), "rsync allowed access") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not connect within 5s:\n%s", d.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.Stop()
	write(t, src, "a", "two")
	err := push(t, tgt, "a")
	var lost *standbyLostError
	if !errors.As(err, &lost) {
		t.Fatalf("push through a standby whose daemon died = %v; want the lost connection known, not only the refusal", err)
	}
	// What the operator sees is why the target fails now.
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 10 || !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("push error = %v, want the fresh rsync's refusal (exit 10)", err)
	}
}

func TestWarmStartsAStandbyForTheFirstPush(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	tgt, src := standbyTarget(t, d, time.Minute)
	tgt.Warm()
	ready := tgt.standbyNow()
	if ready == nil {
		t.Fatal("no rsync waiting after Warm")
	}
	tgt.Warm() // one is enough
	if again := tgt.standbyNow(); again != ready {
		t.Error("a second Warm replaced the waiting rsync")
	}
	write(t, src, "a", "first")
	if err := push(t, tgt, "a"); err != nil {
		t.Fatal(err)
	}
	wantFile(t, d.Dir, "a", "first")
	if !ready.exited() || ready.waitErr != nil {
		t.Errorf("the warmed rsync did not carry the first push (exited %v, %v)", ready.exited(), ready.waitErr)
	}
}

func TestWarmWithoutStandby(t *testing.T) {
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	tgt, _ := standbyTarget(t, d, 0)
	tgt.Warm()
	if p := tgt.standbyNow(); p != nil {
		t.Error("Warm started an rsync for a target that keeps none")
	}
}
