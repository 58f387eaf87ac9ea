package pusher

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

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
				return failure(Refused, 10, "failed to connect to 127.0.0.1: Connection refused (111)")
			}}
			q := queueFor(t, tg)
			if err := q.Add(numbered("f", 10*tc.parallel)); err != nil {
				t.Fatal(err)
			}
			p := newPool(q, []*fakeTarget{tg}, Options{tune: tuning{minParallelBacklog: 1}, BackoffMin: time.Hour, Workers: tc.parallel, BatchMax: 10, BackoffMax: time.Hour})
			start(t, p)
			testutil.Eventually(t, 10*time.Second, "every batch failed", func() bool {
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
			if left := time.Until(st.RetryAt); left > p.opt.BackoffMin {
				t.Errorf("backoff %v, want the first one (%v)", left, p.opt.BackoffMin)
			}
		})
	}
}

// A failure after the backoff is a further one in a row.
func TestPoolSuccessiveFailuresStillCount(t *testing.T) {
	tg := &fakeTarget{name: "t", push: func(context.Context, []string) error { return failure(ConnectionLost, 10, "") }}
	q := queueFor(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: 5 * time.Millisecond, Workers: 1, BackoffMax: time.Second})
	start(t, p)
	if err := q.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "failures in a row grow", func() bool { return p.Status()[0].ConsecutiveFailures >= 4 })
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
	var pt *probingTarget
	pt = &probingTarget{fakeTarget: &fakeTarget{name: "t", push: func(context.Context, []string) error {
		if !pt.up.Load() {
			return failure(ConnectionLost, 10, "")
		}
		return nil
	}}}
	q := queueFor(t, pt.fakeTarget)
	p := New(q, []Target{pt}, Options{BackoffMin: time.Hour, Workers: 1, BackoffMax: time.Hour, ProbeEvery: 20 * time.Millisecond, Log: testutil.QuietLog()})
	start(t, p)
	if err := q.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the push fails", func() bool { return p.Status()[0].ConsecutiveFailures == 1 })
	testutil.Eventually(t, 5*time.Second, "probes run while it is down", func() bool { return pt.probes.Load() >= 5 })
	if calls, _, _, _ := pt.snapshot(); calls != 1 {
		t.Fatalf("%d rsyncs while the target was down, want 1: probes, not pushes, look whether it is back", calls)
	}
	pt.up.Store(true)
	back := time.Now()
	testutil.Eventually(t, 2*time.Second, "pushed once it answers, not after its hour of backoff", func() bool { return q.Pending("t") == 0 })
	t.Logf("pushed %v after the target came back", time.Since(back).Round(time.Millisecond))
	if st := p.Status()[0]; st.ConsecutiveFailures != 0 {
		t.Errorf("status after recovery: %+v", st)
	}
}

// A target that answers but fails (bad password, full disk) is not probed
// over and over, nor pushed before its backoff ends.
func TestPoolProbeLeavesAReachableFailingTargetAlone(t *testing.T) {
	pt := &probingTarget{fakeTarget: &fakeTarget{name: "t", push: func(context.Context, []string) error {
		return failure(Failed, 5, "@ERROR: auth failed on module backup")
	}}}
	pt.up.Store(true)
	q := queueFor(t, pt.fakeTarget)
	p := New(q, []Target{pt}, Options{BackoffMin: time.Hour, Workers: 1, BackoffMax: time.Hour, ProbeEvery: 10 * time.Millisecond, Log: testutil.QuietLog()})
	start(t, p)
	if err := q.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the push fails", func() bool { return p.Status()[0].ConsecutiveFailures == 1 })
	time.Sleep(300 * time.Millisecond)
	if calls, _, _, _ := pt.snapshot(); calls != 1 || pt.probes.Load() != 1 {
		t.Errorf("%d pushes and %d probes in 300ms of a one-hour backoff, want 1 and 1", calls, pt.probes.Load())
	}
}

// A full push that failed is retried on the backoff: nothing else woke the
// target's loop, so "retrying in 1s" was never done.
func TestPoolRetriesFailedFullPush(t *testing.T) {
	var fails atomic.Int32
	fails.Store(2)
	tg := &fakeTarget{name: "t", full: func(context.Context) error {
		if fails.Add(-1) >= 0 {
			return failure(Partial, 23, `send_files failed to open "/src/secret": Permission denied (13)`)
		}
		return nil
	}}
	q := queueFor(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: 10 * time.Millisecond, Workers: 1, BackoffMax: time.Second})
	start(t, p)
	if err := q.AddFullSync(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the full push is retried until it succeeds", func() bool { return q.Pending("t") == 0 })
	if _, full, _, _ := tg.snapshot(); full != 3 {
		t.Errorf("%d full pushes, want 3", full)
	}
}

// A path that fails on its own is parked on the backoff of its own
// failures in a row (BackoffMin, doubling, up to BackoffMax), not for
// BackoffMax each time; and a change of it ends its park at once.
func TestPoolParkFollowsTheBackoff(t *testing.T) {
	var fixed atomic.Bool
	tg := &fakeTarget{name: "t", push: func(_ context.Context, paths []string) error {
		if !fixed.Load() && len(paths) == 1 && paths[0] == "bad" {
			return failure(Partial, 23, `send_files failed to open "bad": Permission denied (13)`)
		}
		return nil
	}}
	q := queueFor(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: 40 * time.Millisecond, Workers: 1, BackoffMax: time.Hour})
	start(t, p)
	if err := q.Add([]string{"bad"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "retried on the backoff, not after BackoffMax", func() bool {
		return recordsOf(t, q, "t")["bad"].Attempts >= 4
	})
	tg.mu.Lock()
	starts := append([]time.Time(nil), tg.starts...)
	tg.mu.Unlock()
	for i := 1; i < len(starts); i++ {
		if gap, want := starts[i].Sub(starts[i-1]), p.opt.BackoffMin<<(i-1); gap < want {
			t.Errorf("retry %d came %v after the previous push, want at least %v", i, gap, want)
		}
	}
	if p.Status()[0].ConsecutiveFailures != 0 {
		t.Error("a path failing on its own counted as a failure of the target")
	}
	// Its park is long now; the change that fixes it is pushed at once.
	testutil.Eventually(t, 5*time.Second, "parked for 320ms at least", func() bool {
		return time.Until(recordsOf(t, q, "t")["bad"].RetryAt) > 200*time.Millisecond
	})
	fixed.Store(true)
	if err := q.Add([]string{"bad"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 150*time.Millisecond, "the change pushed before the park ends", func() bool { return q.Pending("t") == 0 })
}

// Once a target failed, its retries are one rsync at a time, whatever its
// backlog: a target still down sees one connection per retry, not one per
// worker.
func TestPoolFailingTargetRetriesOneAtATime(t *testing.T) {
	var in, most atomic.Int32
	var failedOnce atomic.Bool
	tg := &fakeTarget{name: "t", push: func(context.Context, []string) error {
		n := in.Add(1)
		defer in.Add(-1)
		if failedOnce.Load() && n > most.Load() {
			most.Store(n)
		}
		time.Sleep(5 * time.Millisecond)
		return failure(Refused, 10, "failed to connect to 127.0.0.1 (127.0.0.1): Connection refused (111)")
	}}
	q := queueFor(t, tg)
	if err := q.Add(numbered("f", 40)); err != nil {
		t.Fatal(err)
	}
	p := newPool(q, []*fakeTarget{tg}, Options{tune: tuning{minParallelBacklog: 1}, BackoffMin: 10 * time.Millisecond, Workers: 4, BatchMax: 10, BackoffMax: 20 * time.Millisecond})
	start(t, p)
	testutil.Eventually(t, 5*time.Second, "the first failure", func() bool { return p.Status()[0].ConsecutiveFailures >= 1 })
	failedOnce.Store(true)
	testutil.Eventually(t, 5*time.Second, "retries", func() bool { return p.Status()[0].ConsecutiveFailures >= 6 })
	if m := most.Load(); m != 1 {
		t.Errorf("%d rsyncs at once to a failing target, want 1", m)
	}
}

// A push that never reached the target left nothing there: its recovery
// needs no full push. One whose connection died may have left temp files,
// and so may one whose failure the target did not explain.
// (internal/rsync's TestExitOutcome: which rsync exits are which.)
func TestPoolFullPushAfterCutOffOnly(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantFull int
	}{
		{"refused", failure(Refused, 10, "failed to connect to 10.0.0.1 (10.0.0.1): Connection refused (111)"), 0},
		{"connection lost", failure(ConnectionLost, 12, "connection unexpectedly closed (123 bytes received so far)"), 1},
		{"failed otherwise", failure(Failed, 5, "@ERROR: auth failed on module backup"), 0},
		{"unexplained", errors.New("signal: killed"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fails atomic.Int32
			fails.Store(1)
			tg := &fakeTarget{name: "t", push: func(context.Context, []string) error {
				if fails.Add(-1) >= 0 {
					return tc.err
				}
				return nil
			}}
			q := queueFor(t, tg)
			p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: 5 * time.Millisecond, Workers: 1, BackoffMax: 10 * time.Millisecond})
			start(t, p)
			if err := q.Add([]string{"a"}); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "recovered", func() bool {
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
	q, path := testutil.OpenQueue(t, queue.Open, "", "t")
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
	q, _ = testutil.OpenQueue(t, queue.Open, path, "t")
	tg := &fakeTarget{name: "t"}
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1, BackoffMax: time.Hour})
	start(t, p)
	testutil.Eventually(t, 2*time.Second, "the park of the earlier process known", func() bool { return q.Parked("bad") || q.Pending("t") == 0 })
	testutil.Eventually(t, 2*time.Second, "pushed when its park ends", func() bool { return q.Pending("t") == 0 })
	if q.Parked("bad") {
		t.Error("still parked after its push")
	}
}
