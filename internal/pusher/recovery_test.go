package pusher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

func setMinParallelBacklog(t *testing.T, n int) {
	t.Helper()
	old := MinParallelBacklog
	MinParallelBacklog = n
	t.Cleanup(func() { MinParallelBacklog = old })
}

// Batches that were in flight together when the target went down are one
// failure in a row: four of them took the backoff from 1 s to 8 s at once.
func TestPoolParallelFailuresCountOnce(t *testing.T) {
	tests := []struct {
		name     string
		parallel int
	}{
		{"two batches", 2},
		{"four batches", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setBackoffMin(t, time.Hour)
			setMinParallelBacklog(t, 1)
			var mu sync.Mutex
			in := 0
			all := make(chan struct{})
			tg := &fakeTarget{name: "t", push: func(context.Context, []string) error {
				mu.Lock()
				if in++; in == tc.parallel {
					close(all)
				}
				mu.Unlock()
				select {
				case <-all:
				case <-time.After(5 * time.Second):
				}
				return &ExitError{Code: 10, Stderr: "rsync: failed to connect to 127.0.0.1: Connection refused (111)"}
			}}
			q := openQueue(t, tg)
			if err := q.Add(numbered("f", 10*tc.parallel)); err != nil {
				t.Fatal(err)
			}
			p := newPool(q, []*fakeTarget{tg}, Options{Workers: tc.parallel, BatchMax: 10, BackoffMax: time.Hour})
			start(t, p)
			eventually(t, 10*time.Second, "every batch failed", func() bool {
				failed, held, err := q.Failing("t")
				return err == nil && failed == 10*tc.parallel && held == 0
			})
			if _, _, _, most := tg.snapshot(); most != tc.parallel {
				t.Fatalf("%d pushes in flight at most, want %d", most, tc.parallel)
			}
			st := p.Status()[0]
			if st.ConsecutiveFailures != 1 {
				t.Errorf("%d failures in a row after %d batches failed together, want 1", st.ConsecutiveFailures, tc.parallel)
			}
			if left := time.Until(st.RetryAt); left > BackoffMin {
				t.Errorf("backoff %v, want the first one (%v)", left, BackoffMin)
			}
		})
	}
}

// A failure after the backoff is a further one in a row.
func TestPoolSuccessiveFailuresStillCount(t *testing.T) {
	setBackoffMin(t, 5*time.Millisecond)
	tg := &fakeTarget{name: "t", push: func(context.Context, []string) error { return &ExitError{Code: 10} }}
	q := openQueue(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1, BackoffMax: time.Second})
	start(t, p)
	if err := q.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "failures in a row grow", func() bool { return p.Status()[0].ConsecutiveFailures >= 4 })
}

// probingTarget is a fake target that answers probes while up.
type probingTarget struct {
	*fakeTarget
	up     atomic.Bool
	probes atomic.Int32
}

func (p *probingTarget) Probe(context.Context) error {
	p.probes.Add(1)
	if !p.up.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func TestPoolProbeEndsBackoffOfATargetThatCameBack(t *testing.T) {
	setBackoffMin(t, time.Hour)
	var pt *probingTarget
	pt = &probingTarget{fakeTarget: &fakeTarget{name: "t", push: func(context.Context, []string) error {
		if !pt.up.Load() {
			return &ExitError{Code: 10}
		}
		return nil
	}}}
	q := openQueue(t, pt.fakeTarget)
	p := New(q, []Target{pt}, Options{Workers: 1, BackoffMax: time.Hour, ProbeEvery: 20 * time.Millisecond, Log: discard()})
	start(t, p)
	if err := q.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the push fails", func() bool { return p.Status()[0].ConsecutiveFailures == 1 })
	eventually(t, 5*time.Second, "probes run while it is down", func() bool { return pt.probes.Load() >= 5 })
	if calls, _, _, _ := pt.snapshot(); calls != 1 {
		t.Fatalf("%d rsyncs while the target was down, want 1: probes, not pushes, look whether it is back", calls)
	}
	pt.up.Store(true)
	back := time.Now()
	eventually(t, 2*time.Second, "pushed once it answers, not after its hour of backoff", func() bool { return q.Pending("t") == 0 })
	t.Logf("pushed %v after the target came back", time.Since(back).Round(time.Millisecond))
	if st := p.Status()[0]; st.ConsecutiveFailures != 0 {
		t.Errorf("status after recovery: %+v", st)
	}
}

// A target that answers but fails (bad password, full disk) is not probed
// over and over, nor pushed before its backoff ends.
func TestPoolProbeLeavesAReachableFailingTargetAlone(t *testing.T) {
	setBackoffMin(t, time.Hour)
	pt := &probingTarget{fakeTarget: &fakeTarget{name: "t", push: func(context.Context, []string) error {
		return &ExitError{Code: 5, Stderr: "@ERROR: auth failed on module backup"}
	}}}
	pt.up.Store(true)
	q := openQueue(t, pt.fakeTarget)
	p := New(q, []Target{pt}, Options{Workers: 1, BackoffMax: time.Hour, ProbeEvery: 10 * time.Millisecond, Log: discard()})
	start(t, p)
	if err := q.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the push fails", func() bool { return p.Status()[0].ConsecutiveFailures == 1 })
	time.Sleep(300 * time.Millisecond)
	if calls, _, _, _ := pt.snapshot(); calls != 1 || pt.probes.Load() != 1 {
		t.Errorf("%d pushes and %d probes in 300ms of a one-hour backoff, want 1 and 1", calls, pt.probes.Load())
	}
}

// A full push that failed is retried on the backoff: nothing else woke the
// target's loop, so "retrying in 1s" was never done.
func TestPoolRetriesFailedFullPush(t *testing.T) {
	setBackoffMin(t, 10*time.Millisecond)
	var fails atomic.Int32
	fails.Store(2)
	tg := &fakeTarget{name: "t", full: func(context.Context) error {
		if fails.Add(-1) >= 0 {
			return &ExitError{Code: 23, Stderr: `rsync: [sender] send_files failed to open "/src/secret": Permission denied (13)`}
		}
		return nil
	}}
	q := openQueue(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1, BackoffMax: time.Second})
	start(t, p)
	if err := q.AddFullSync(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the full push is retried until it succeeds", func() bool { return q.Pending("t") == 0 })
	if _, full, _, _ := tg.snapshot(); full != 3 {
		t.Errorf("%d full pushes, want 3", full)
	}
}

func discard() logrus.FieldLogger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return log
}

func TestProbeAddr(t *testing.T) {
	tests := []struct {
		name string
		t    *RsyncTarget
		want string
	}{
		{"daemon", &RsyncTarget{Dest: "10.0.0.1::mod"}, "10.0.0.1:873"},
		{"daemon with user and port", &RsyncTarget{Dest: "us@er@backup.example::mod", Port: 8873}, "backup.example:8873"},
		{"daemon on IPv6", &RsyncTarget{Dest: "user@[fe80::1]::mod"}, "[fe80::1]:873"},
		{"ssh", &RsyncTarget{Dest: "root@10.0.0.2:/backup", SSHCommand: "ssh"}, "10.0.0.2:22"},
		{"ssh with port", &RsyncTarget{Dest: "10.0.0.2:/b:c", SSHCommand: "ssh -p 2222", Port: 2222}, "10.0.0.2:2222"},
		{"ssh on IPv6", &RsyncTarget{Dest: "[::1]:/backup", SSHCommand: "ssh"}, "[::1]:22"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.t.probeAddr()
			if err != nil || got != tc.want {
				t.Errorf("probeAddr(%q) = %q, %v; want %q", tc.t.Dest, got, err, tc.want)
			}
		})
	}
}

// TestTargetDownForAnHour: a real rsync daemon stops while changes are
// queued for it, the pool's backoff stands at an hour (the clock shortened
// by BackoffMin, as after an hour of failures), and the daemon comes back
// on the same port: the target must equal the source, byte for byte,
// within 5 s, and the daemon must not have been sent an rsync while down.
func TestTargetDownForAnHour(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	setBackoffMin(t, time.Hour)
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	src := t.TempDir()
	tgt := &RsyncTarget{Source: src, Dest: "127.0.0.1::" + d.Module, Port: d.Port, Params: []string{"-artuz"}, Standby: 10 * time.Second}
	name := tgt.Name()
	q, err := queue.Open(filepath.Join(t.TempDir(), "queue.db"), []string{name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	var pushes atomic.Int32
	obs := observerFunc(func(string, []string, time.Duration, error) { pushes.Add(1) })
	p := New(q, []Target{tgt}, Options{Workers: 2, BackoffMax: time.Hour, Log: discard(), Observer: obs})
	stop, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(stop, context.Background()) }()
	t.Cleanup(func() { cancel(); <-done })

	write := func(n int) []string {
		var paths []string
		for i := 0; i < 20; i++ {
			rel := fmt.Sprintf("d%d/f%02d", n, i)
			mkfile(t, src, rel, strings.Repeat(rel, 100*i))
			paths = append(paths, fmt.Sprintf("d%d", n), rel)
		}
		return paths
	}
	if err := q.Add(write(0)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitConverged(t, src, d.Dir, 10*time.Second, "before the outage")

	d.Stop()
	if err := q.Add(write(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the push to the stopped daemon fails", func() bool { return p.Status()[0].ConsecutiveFailures > 0 })
	if left := time.Until(p.Status()[0].RetryAt); left < 50*time.Minute {
		t.Fatalf("backoff %v, want about an hour", left)
	}
	failedPushes := pushes.Load()
	// Changes while it is down, and several probes that find it down.
	for n := 2; n < 4; n++ {
		if err := q.Add(write(n)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * DefaultProbeEvery)
	}
	if n := pushes.Load(); n != failedPushes {
		t.Errorf("%d rsyncs to the stopped daemon during its backoff, want none", n-failedPushes)
	}
	if err := os.Remove(filepath.Join(src, "d0/f03")); err != nil {
		t.Fatal(err)
	}
	if err := q.Add([]string{"d0/f03"}); err != nil {
		t.Fatal(err)
	}

	d.Start()
	back := time.Now()
	testutil.WaitConverged(t, src, d.Dir, 5*time.Second, "within 5 s of the daemon's return")
	t.Logf("target equal %v after the daemon came back", time.Since(back).Round(time.Millisecond))
	waitFor(t, 5*time.Second, "queue empty, nothing failing", func() bool {
		failed, _, err := q.Failing(name)
		return err == nil && failed == 0 && q.Pending(name) == 0 && p.Status()[0].ConsecutiveFailures == 0
	})
}

type observerFunc func(target string, paths []string, took time.Duration, err error)

func (f observerFunc) Pushed(target string, paths []string, took time.Duration, err error) {
	f(target, paths, took, err)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A path that fails on its own is parked on the backoff of its own
// failures in a row (BackoffMin, doubling, up to BackoffMax), not for
// BackoffMax each time; and a change of it ends its park at once.
func TestPoolParkFollowsTheBackoff(t *testing.T) {
	setBackoffMin(t, 40*time.Millisecond)
	var fixed atomic.Bool
	tg := &fakeTarget{name: "t", push: func(_ context.Context, paths []string) error {
		if !fixed.Load() && len(paths) == 1 && paths[0] == "bad" {
			return &ExitError{Code: 23, Stderr: `rsync: [sender] send_files failed to open "bad": Permission denied (13)`}
		}
		return nil
	}}
	q := openQueue(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1, BackoffMax: time.Hour})
	start(t, p)
	if err := q.Add([]string{"bad"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "retried on the backoff, not after BackoffMax", func() bool {
		return recordsOf(t, q, "t")["bad"].Attempts >= 4
	})
	tg.mu.Lock()
	starts := append([]time.Time(nil), tg.starts...)
	tg.mu.Unlock()
	for i := 1; i < len(starts); i++ {
		if gap, want := starts[i].Sub(starts[i-1]), BackoffMin<<(i-1); gap < want {
			t.Errorf("retry %d came %v after the previous push, want at least %v", i, gap, want)
		}
	}
	if p.Status()[0].ConsecutiveFailures != 0 {
		t.Error("a path failing on its own counted as a failure of the target")
	}
	// Its park is long now; the change that fixes it is pushed at once.
	eventually(t, 5*time.Second, "parked for 320ms at least", func() bool {
		return time.Until(recordsOf(t, q, "t")["bad"].RetryAt) > 200*time.Millisecond
	})
	fixed.Store(true)
	if err := q.Add([]string{"bad"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 150*time.Millisecond, "the change pushed before the park ends", func() bool { return q.Pending("t") == 0 })
}

// Once a target failed, its retries are one rsync at a time, whatever its
// backlog: a target still down sees one connection per retry, not one per
// worker.
func TestPoolFailingTargetRetriesOneAtATime(t *testing.T) {
	setBackoffMin(t, 10*time.Millisecond)
	setMinParallelBacklog(t, 1)
	var in, most atomic.Int32
	var failedOnce atomic.Bool
	tg := &fakeTarget{name: "t", push: func(context.Context, []string) error {
		n := in.Add(1)
		defer in.Add(-1)
		if failedOnce.Load() && n > most.Load() {
			most.Store(n)
		}
		time.Sleep(5 * time.Millisecond)
		return &ExitError{Code: 10, Stderr: "rsync: [sender] failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)"}
	}}
	q := openQueue(t, tg)
	if err := q.Add(numbered("f", 40)); err != nil {
		t.Fatal(err)
	}
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 4, BatchMax: 10, BackoffMax: 20 * time.Millisecond})
	start(t, p)
	eventually(t, 5*time.Second, "the first failure", func() bool { return p.Status()[0].ConsecutiveFailures >= 1 })
	failedOnce.Store(true)
	eventually(t, 5*time.Second, "retries", func() bool { return p.Status()[0].ConsecutiveFailures >= 6 })
	if m := most.Load(); m != 1 {
		t.Errorf("%d rsyncs at once to a failing target, want 1", m)
	}
}

// A push that never reached the target left nothing there: its recovery
// needs no full push. One whose connection died may have left temp files.
func TestPoolFullPushAfterCutOffOnly(t *testing.T) {
	tests := []struct {
		name     string
		err      *ExitError
		wantFull int
	}{
		{"daemon refused", &ExitError{Code: 10, Stderr: "rsync: [sender] failed to connect to 10.0.0.1 (10.0.0.1): Connection refused (111)\nrsync error: error in socket IO (code 10) at clientserver.c(139) [sender=3.2.7]"}, 0},
		{"no daemon greeting", &ExitError{Code: 35}, 0},
		{"ssh refused", &ExitError{Code: 255, Stderr: "ssh: connect to host 10.0.0.1 port 22: Connection refused\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]"}, 0},
		{"connection died", &ExitError{Code: 12, Stderr: "rsync: connection unexpectedly closed (123 bytes received so far) [sender]"}, 1},
		{"socket error mid-transfer", &ExitError{Code: 10, Stderr: "rsync: read error: Connection reset by peer (104)"}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setBackoffMin(t, 5*time.Millisecond)
			var fails atomic.Int32
			fails.Store(1)
			tg := &fakeTarget{name: "t", push: func(context.Context, []string) error {
				if fails.Add(-1) >= 0 {
					return tc.err
				}
				return nil
			}}
			q := openQueue(t, tg)
			p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1, BackoffMax: 10 * time.Millisecond})
			start(t, p)
			if err := q.Add([]string{"a"}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "recovered", func() bool {
				_, full, _, _ := tg.snapshot()
				return q.Pending("t") == 0 && full == tc.wantFull
			})
			time.Sleep(50 * time.Millisecond)
			if _, full, _, _ := tg.snapshot(); full != tc.wantFull {
				t.Errorf("%d full pushes after recovery, want %d", full, tc.wantFull)
			}
		})
	}
}

// A path parked by an earlier process is pushed when its park ends, with
// no other change to wake the target, and its chmod counts meanwhile.
func TestPoolRetriesPathParkedBeforeARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	q, err := queue.Open(path, []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Add([]string{"bad"}); err != nil {
		t.Fatal(err)
	}
	items, err := q.Claim("t", 1)
	if err != nil || len(items) != 1 {
		t.Fatalf("claim: %v %v", items, err)
	}
	if err := q.Fail("t", items, queue.Failure{ExitCode: 23, Park: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err = queue.Open(path, []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	tg := &fakeTarget{name: "t"}
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1, BackoffMax: time.Hour})
	start(t, p)
	eventually(t, 2*time.Second, "the park of the earlier process known", func() bool { return q.Parked("bad") || q.Pending("t") == 0 })
	eventually(t, 2*time.Second, "pushed when its park ends", func() bool { return q.Pending("t") == 0 })
	if q.Parked("bad") {
		t.Error("still parked after its push")
	}
}
