package pusher

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// fakeTarget stands for an rsync target; push and full decide each call's
// outcome and may block, and every call is counted.
type fakeTarget struct {
	name string
	push func(ctx context.Context, paths []string) error // nil: success
	full func(ctx context.Context) error                 // nil: success

	mu          sync.Mutex
	calls       int
	fullCalls   int
	inflight    int
	maxInflight int
	starts      []time.Time
	pushed      map[string]int // successful pushes per path
}

func (f *fakeTarget) Name() string { return f.name }

func (f *fakeTarget) Push(ctx context.Context, changes []change.Change) error {
	paths := change.Paths(changes)
	f.mu.Lock()
	f.calls++
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.starts = append(f.starts, time.Now())
	f.mu.Unlock()
	var err error
	if f.push != nil {
		err = f.push(ctx, paths)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight--
	if err == nil {
		if f.pushed == nil {
			f.pushed = map[string]int{}
		}
		for _, p := range paths {
			f.pushed[p]++
		}
	}
	return err
}

func (f *fakeTarget) FullPush(ctx context.Context, _ []string) error {
	f.mu.Lock()
	f.fullCalls++
	f.mu.Unlock()
	if f.full != nil {
		return f.full(ctx)
	}
	return nil
}

func (f *fakeTarget) Close() error { return nil }

func (f *fakeTarget) snapshot() (calls, fullCalls, inflight, maxInflight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.fullCalls, f.inflight, f.maxInflight
}

func (f *fakeTarget) pushedCount(p string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pushed[p]
}

// wait blocks a fake push until ch is closed or the pool kills the push.
func wait(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("killed: %w", ctx.Err())
	}
}

// queueFor opens a fresh queue for the fake targets.
func queueFor(t *testing.T, targets ...*fakeTarget) *queue.Queue {
	t.Helper()
	names := make([]string, len(targets))
	for i, tg := range targets {
		names[i] = tg.name
	}
	q, _ := testutil.OpenQueue(t, queue.Open, "", names...)
	return q
}

func newPool(q *queue.Queue, targets []*fakeTarget, opt Options) *Pool {
	opt.Log = testutil.QuietLog()
	ts := make([]Target, len(targets))
	for i, tg := range targets {
		ts[i] = tg
	}
	return New(q, ts, opt)
}

type running struct {
	stop, kill context.CancelFunc
	done       chan struct{}
}

// start runs the pool until the test ends.
func start(t *testing.T, p *Pool) *running {
	t.Helper()
	stopCtx, stop := context.WithCancel(context.Background())
	hardCtx, kill := context.WithCancel(context.Background())
	r := &running{stop: stop, kill: kill, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		p.Run(stopCtx, hardCtx)
	}()
	t.Cleanup(func() {
		stop()
		kill()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("pool did not stop within 5s of its contexts ending")
		}
	})
	return r
}

func recordsOf(t *testing.T, q *queue.Queue, target string) map[string]queue.Record {
	t.Helper()
	recs := map[string]queue.Record{}
	if err := q.Records(target, func(p string, r queue.Record) bool {
		recs[p] = r
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return recs
}

func keys(m map[string]queue.Record) []string {
	out := []string{}
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func numbered(prefix string, n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return ps
}

func TestPoolPushesEachPathOnce(t *testing.T) {
	tests := []struct {
		name     string
		paths    []string
		batchMax int
		maxCalls int // per target
		full     bool
	}{
		{"one change", []string{"dir/file"}, 5000, 1, false},
		{"burst in one batch", numbered("f", 5000), 5000, 2, false},
		{"burst over BatchMax", numbered("f", 5000), 1000, 5, false},
		{"full sync", []string{queue.FullSync}, 5000, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := &fakeTarget{name: "a"}, &fakeTarget{name: "b"}
			q := queueFor(t, a, b)
			p := newPool(q, []*fakeTarget{a, b}, Options{Workers: 4, BatchMax: tc.batchMax})
			r := start(t, p)
			// Added while the pool runs, so Notify is what starts the pushes.
			if err := q.Add(tc.paths); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "every target drained", func() bool {
				return q.Pending("a") == 0 && q.Pending("b") == 0
			})
			// Nothing is left to claim, so the counts are final once Run returns.
			r.stop()
			<-r.done
			for _, f := range []*fakeTarget{a, b} {
				calls, fulls, _, _ := f.snapshot()
				if calls > tc.maxCalls {
					t.Errorf("%s: %d Push calls for %d paths, want at most %d", f.name, calls, len(tc.paths), tc.maxCalls)
				}
				if tc.full {
					if fulls != 1 {
						t.Errorf("%s: %d FullPush calls, want 1", f.name, fulls)
					}
					continue
				}
				for _, path := range tc.paths {
					if n := f.pushedCount(path); n != 1 {
						t.Fatalf("%s: %q pushed %d times, want once", f.name, path, n)
					}
				}
				if len(recordsOf(t, q, f.name)) != 0 {
					t.Errorf("%s: records left after the pushes", f.name)
				}
			}
		})
	}
}

func TestPoolSlowTargetDoesNotHoldOthers(t *testing.T) {
	release := make(chan struct{})
	slow := &fakeTarget{name: "slow", push: func(ctx context.Context, _ []string) error { return wait(ctx, release) }}
	fast := &fakeTarget{name: "fast"}
	q := queueFor(t, slow, fast)
	// BatchMax 1: every path is a batch, so the slow target has work for
	// every worker it could get.
	p := newPool(q, []*fakeTarget{slow, fast}, Options{Workers: 4, BatchMax: 1,
		tune: tuning{minParallelBacklog: 1}}) // every backlog is worth a second rsync here
	start(t, p)
	if err := q.Add(numbered("p", 20)); err != nil {
		t.Fatal(err)
	}

	testutil.Eventually(t, 5*time.Second, "the fast target drains while the slow one hangs", func() bool {
		return q.Pending("fast") == 0
	})
	testutil.Eventually(t, 5*time.Second, "the slow target uses its share", func() bool {
		_, _, inflight, _ := slow.snapshot()
		return inflight == 2
	})
	if calls, _, _, most := slow.snapshot(); most > 2 || calls > 2 {
		t.Fatalf("slow target: %d pushes started, %d at once; its share of 4 workers is 2", calls, most)
	}

	close(release)
	testutil.Eventually(t, 5*time.Second, "the slow target drains once released", func() bool {
		return q.Pending("slow") == 0
	})
	for _, f := range []*fakeTarget{slow, fast} {
		if _, _, _, most := f.snapshot(); most > 2 {
			t.Errorf("%s had %d pushes at once, want at most 2", f.name, most)
		}
	}
}

func TestPoolFailingTargetBacksOff(t *testing.T) {
	const backoffMax = 50 * time.Millisecond
	var failing atomic.Bool
	failing.Store(true)
	bad := &fakeTarget{name: "bad", push: func(context.Context, []string) error {
		if failing.Load() {
			return &PushError{Outcome: ConnectionLost, Code: 10, Meaning: "error in socket I/O",
				Err: errors.New("exit 10 (error in socket I/O): failed to connect: Connection refused (111)")}
		}
		return nil
	}}
	good := &fakeTarget{name: "good"}
	q := queueFor(t, bad, good)
	p := newPool(q, []*fakeTarget{bad, good}, Options{BackoffMin: 10 * time.Millisecond, Workers: 2, BatchMax: 100, BackoffMax: backoffMax})
	start(t, p)
	if err := q.Add([]string{"x", "y/z"}); err != nil {
		t.Fatal(err)
	}

	testutil.Eventually(t, 5*time.Second, "the healthy target converges", func() bool { return q.Pending("good") == 0 })
	// Status, not the fake, says when a failure is fully recorded.
	testutil.Eventually(t, 5*time.Second, "the failing target retries", func() bool {
		return p.Status()[0].ConsecutiveFailures >= 6
	})

	recs := recordsOf(t, q, "bad")
	if got := keys(recs); !reflect.DeepEqual(got, []string{"x", "y/z"}) {
		t.Fatalf("records of the failing target = %q", got)
	}
	for path, r := range recs {
		if r.Attempts < 1 || r.ExitCode != 10 {
			t.Errorf("record %q = %+v, want attempts and exit 10", path, r)
		}
	}
	if why, err := q.LastFailure("bad"); err != nil || !strings.Contains(why, "error in socket I/O") || !strings.Contains(why, "Connection refused") {
		t.Errorf("the queue keeps %q (%v) as the reason, want rsync's", why, err)
	}

	bad.mu.Lock()
	starts := append([]time.Time(nil), bad.starts...)
	bad.mu.Unlock()
	for i := 1; i < len(starts); i++ {
		want := min(p.opt.BackoffMin<<(i-1), backoffMax)
		if gap := starts[i].Sub(starts[i-1]); gap < want {
			t.Errorf("retry %d came %v after the previous push, want at least %v", i, gap, want)
		}
	}
	st := p.Status()[0]
	if st.Name != "bad" || st.ConsecutiveFailures < 6 || !strings.Contains(st.LastError, "exit 10") {
		t.Errorf("status = %+v", st)
	}
	// The doubling stops at BackoffMax; uncapped, the sixth wait would be 320ms.
	if left := time.Until(st.RetryAt); left > backoffMax {
		t.Errorf("next retry in %v, want at most BackoffMax %v", left, backoffMax)
	}

	failing.Store(false)
	// The status is reset just after the ack, so both are awaited.
	testutil.Eventually(t, 5*time.Second, "the recovered target converges and is healthy again", func() bool {
		st := p.Status()[0]
		return q.Pending("bad") == 0 && st.ConsecutiveFailures == 0 && st.LastError == ""
	})
}

func TestPoolRetryNowEndsBackoff(t *testing.T) {
	var fails atomic.Int32
	fails.Store(1)
	tg := &fakeTarget{name: "t", push: func(context.Context, []string) error {
		if fails.Add(-1) >= 0 {
			return failure(ConnectionLost, 30, "")
		}
		return nil
	}}
	q := queueFor(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: time.Hour, Workers: 1, BackoffMax: time.Hour})
	start(t, p)
	if err := q.Add([]string{"f"}); err != nil {
		t.Fatal(err)
	}
	// RetryNow before the failure is recorded would be overwritten by it.
	testutil.Eventually(t, 5*time.Second, "the first push fails", func() bool {
		return p.Status()[0].ConsecutiveFailures == 1
	})
	if left := time.Until(p.Status()[0].RetryAt); left < 30*time.Minute {
		t.Fatalf("backoff is %v, want about an hour", left)
	}
	if r := recordsOf(t, q, "t")["f"]; r.Attempts != 1 || r.ExitCode != 30 {
		t.Fatalf("record after failure = %+v", r)
	}

	p.RetryNow()
	testutil.Eventually(t, 2*time.Second, "RetryNow pushes at once", func() bool { return q.Pending("t") == 0 })
	if calls, _, _, _ := tg.snapshot(); calls != 2 {
		t.Errorf("%d pushes, want 2", calls)
	}
}

func TestPoolBisectsPartialTransfer(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		bad   []string
	}{
		{"one bad in the middle", numbered("f", 8), []string{"f0003"}},
		{"bad first", numbered("f", 8), []string{"f0000"}},
		{"bad last", numbered("f", 9), []string{"f0008"}},
		// More splits than SplitBudget allows: the rest is retried after a backoff.
		{"two bad among 100", numbered("f", 100), []string{"f0010", "f0077"}},
		{"single bad path", []string{"bad"}, []string{"bad"}},
		{"every path bad", numbered("f", 4), numbered("f", 4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := map[string]bool{}
			for _, b := range tc.bad {
				bad[b] = true
			}
			tg := &fakeTarget{name: "t", push: func(_ context.Context, paths []string) error {
				for _, p := range paths {
					if bad[p] {
						return failure(Partial, 23, "send_files failed to open "+p+": Permission denied (13)")
					}
				}
				return nil
			}}
			q := queueFor(t, tg)
			// Queued before the pool starts so the first claim takes them all.
			if err := q.Add(tc.paths); err != nil {
				t.Fatal(err)
			}
			p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: 5 * time.Millisecond, Workers: 1, BatchMax: 5000, BackoffMax: 20 * time.Millisecond})
			start(t, p)

			want := append([]string(nil), tc.bad...)
			sort.Strings(want)
			testutil.Eventually(t, 5*time.Second, "only the bad paths remain, failed", func() bool {
				recs := recordsOf(t, q, "t")
				for _, r := range recs {
					if r.Attempts == 0 {
						return false
					}
				}
				return reflect.DeepEqual(keys(recs), want)
			})
			for path, r := range recordsOf(t, q, "t") {
				if r.Attempts < 1 || r.ExitCode != 23 || !strings.Contains(r.Error, "Permission denied") {
					t.Errorf("record %q = %+v, want the partial transfer recorded", path, r)
				}
			}
			for _, path := range tc.paths {
				if n := tg.pushedCount(path); !bad[path] && n != 1 {
					t.Errorf("good path %q pushed %d times, want once", path, n)
				}
			}
			// A bad file is parked on its own; the target itself goes on.
			if err := q.Add([]string{"late"}); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 2*time.Second, "a later change is pushed", func() bool { return tg.pushedCount("late") == 1 })
		})
	}
}

// A lone path that failed is parked on the backoff, and pool.go logs that it
// "is retried in" that time: it must be pushed again then, without waiting
// for another change to wake the target.
func TestPoolRetriesParkedPath(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	tg := &fakeTarget{name: "t", push: func(_ context.Context, paths []string) error {
		if broken.Load() && len(paths) == 1 && paths[0] == "bad" {
			return failure(Partial, 23, "")
		}
		return nil
	}}
	q := queueFor(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{BackoffMin: 5 * time.Millisecond, Workers: 1, BackoffMax: 20 * time.Millisecond})
	start(t, p)
	if err := q.Add([]string{"bad"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the path is parked", func() bool {
		return recordsOf(t, q, "t")["bad"].Attempts == 1
	})
	broken.Store(false)
	testutil.Eventually(t, 2*time.Second, "the parked path is retried after its park", func() bool { return q.Pending("t") == 0 })
}

func TestPoolRunStopAndKill(t *testing.T) {
	tests := []struct {
		name string
		// push is the fake's push; release ends it when it honours release.
		push         func(ctx context.Context, release <-chan struct{}) error
		kill         bool // cancel hard after stop
		wantPending  int
		wantAttempts int
	}{
		{"stop lets the running push finish and ack",
			func(_ context.Context, release <-chan struct{}) error { <-release; return nil },
			false, 0, 0},
		{"kill cancels the push and keeps the record untouched",
			func(ctx context.Context, _ <-chan struct{}) error {
				<-ctx.Done()
				return fmt.Errorf("rsync killed: %w", ctx.Err())
			},
			true, 1, 0},
		// What completed was pushed, even if the kill came at the same time.
		{"push that completes despite the kill is acked",
			func(ctx context.Context, _ <-chan struct{}) error { <-ctx.Done(); return nil },
			true, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			release := make(chan struct{})
			var once sync.Once
			tg := &fakeTarget{name: "t", push: func(ctx context.Context, _ []string) error {
				once.Do(func() { close(started) })
				return tc.push(ctx, release)
			}}
			q := queueFor(t, tg)
			p := newPool(q, []*fakeTarget{tg}, Options{Workers: 1})
			r := start(t, p)
			if err := q.Add([]string{"f"}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatal("push did not start")
			}

			r.stop()
			select {
			case <-r.done:
				t.Fatal("Run returned with a push still running")
			case <-time.After(50 * time.Millisecond):
			}
			if tc.kill {
				r.kill()
			} else {
				close(release)
			}
			select {
			case <-r.done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after the push ended")
			}

			if got := q.Pending("t"); got != tc.wantPending {
				t.Fatalf("Pending = %d, want %d", got, tc.wantPending)
			}
			if tc.wantPending == 0 {
				return
			}
			if r := recordsOf(t, q, "t")["f"]; r.Attempts != tc.wantAttempts || r.Error != "" {
				t.Fatalf("record = %+v: a killed push is not the target's failure", r)
			}
			// Released, not left in flight: the next run can claim it.
			if items, err := q.Claim("t", 10); err != nil || len(items) != 1 {
				t.Fatalf("Claim after kill = %v, %v; want the record back", items, err)
			}
		})
	}
}

// A full push runs beside live pushes; its --delete or its older copy of a
// file may undo a live push it overlapped, so such paths are pushed again
// once it is done.
func TestPoolRepushesPathsOverlappingFullPush(t *testing.T) {
	tests := []struct {
		name string
		// order in which the blocked pushes are let go
		liveFirst bool
	}{
		{"live push ends during the full push", true},
		{"live push ends after the full push", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fullStarted, releaseFull := make(chan struct{}), make(chan struct{})
			liveStarted, releaseLive := make(chan struct{}), make(chan struct{})
			var liveOnce sync.Once
			tg := &fakeTarget{name: "t",
				full: func(ctx context.Context) error {
					close(fullStarted)
					return wait(ctx, releaseFull)
				},
				push: func(ctx context.Context, _ []string) error {
					first := false
					liveOnce.Do(func() { first = true; close(liveStarted) })
					if first {
						return wait(ctx, releaseLive)
					}
					return nil
				},
			}
			q := queueFor(t, tg)
			p := newPool(q, []*fakeTarget{tg}, Options{Workers: 2})
			start(t, p)

			if err := q.AddFullSync(); err != nil {
				t.Fatal(err)
			}
			<-fullStarted
			if err := q.Add([]string{"f"}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-liveStarted:
			case <-time.After(5 * time.Second):
				t.Fatal("live push did not start beside the full push")
			}
			if tc.liveFirst {
				close(releaseLive)
				// LastSuccess is set after the ack, where the path is noted.
				testutil.Eventually(t, 5*time.Second, "live push done", func() bool { return !p.Status()[0].LastSuccess.IsZero() })
				close(releaseFull)
			} else {
				close(releaseFull)
				testutil.Eventually(t, 5*time.Second, "full push done", func() bool { return !p.Status()[0].FullPushRunning })
				close(releaseLive)
			}
			testutil.Eventually(t, 5*time.Second, "the overlapped path is pushed again", func() bool {
				return tg.pushedCount("f") == 2 && q.Pending("t") == 0
			})
		})
	}
}

// A small backlog waits for the running push and goes out as one batch
// instead of starting rsyncs side by side.
func TestPoolSmallBacklogWaitsForTheRunningPush(t *testing.T) {
	release := make(chan struct{})
	first := true
	var mu sync.Mutex
	tg := &fakeTarget{name: "t", push: func(ctx context.Context, _ []string) error {
		mu.Lock()
		wasFirst := first
		first = false
		mu.Unlock()
		if wasFirst {
			return wait(ctx, release)
		}
		return nil
	}}
	q := queueFor(t, tg)
	p := newPool(q, []*fakeTarget{tg}, Options{Workers: 10, BatchMax: 5000})
	start(t, p)
	if err := q.Add([]string{"first"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the first push runs", func() bool {
		_, _, inflight, _ := tg.snapshot()
		return inflight == 1
	})
	for i := 0; i < 10; i++ {
		if err := q.Add(numbered(fmt.Sprintf("later%d-", i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if calls, _, _, _ := tg.snapshot(); calls != 1 {
		t.Fatalf("%d pushes started for a backlog of 100, want the running one only", calls)
	}
	close(release)
	testutil.Eventually(t, 5*time.Second, "the backlog drains", func() bool { return q.Pending("t") == 0 })
	if calls, _, _, _ := tg.snapshot(); calls != 2 {
		t.Fatalf("%d pushes, want 2: the backlog of 100 as one batch", calls)
	}
}

// failure is a failed push as a target explains it to the pool.
func failure(o Outcome, code int, text string) error {
	return &PushError{Outcome: o, Code: code, Meaning: "test", Err: fmt.Errorf("exit %d: %s", code, text)}
}

// warmTarget is a fakeTarget that counts Warm calls.
type warmTarget struct {
	fakeTarget
	warmed atomic.Int32
}

func (w *warmTarget) Warm() { w.warmed.Add(1) }

func TestPoolWarmsIdleTargetsAtStart(t *testing.T) {
	idle, owed := &warmTarget{fakeTarget: fakeTarget{name: "idle"}}, &warmTarget{fakeTarget: fakeTarget{name: "owed"}}
	q, _ := testutil.OpenQueue(t, queue.Open, "", "idle", "owed")
	// Changes left from a last run: the push starts at once, nothing to warm.
	if err := q.AddChanges([]string{"owed"}, change.Of([]string{"left"})); err != nil {
		t.Fatal(err)
	}
	r := start(t, New(q, []Target{idle, owed}, Options{Log: testutil.QuietLog(), Workers: 2, BatchMax: 10}))
	testutil.Eventually(t, 5*time.Second, "the owed change pushed", func() bool { return owed.pushedCount("left") == 1 })
	r.stop()
	<-r.done
	if n := idle.warmed.Load(); n != 1 {
		t.Errorf("target with nothing pending warmed %d times at start, want once", n)
	}
	if n := owed.warmed.Load(); n != 0 {
		t.Errorf("target with a change pending warmed %d times, want none", n)
	}
}
