package retry

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// fakeTarget stands for an rsync target: push and full decide each push's
// outcome (nil: success) and may block. A full push is recorded as
// queue.FullSync.
type fakeTarget struct {
	name string
	push func(ctx context.Context, paths []string) error
	full func(ctx context.Context) error

	mu     sync.Mutex
	pushed []string // paths of the pushes that succeeded, in order
}

func (f *fakeTarget) Name() string { return f.name }

func (f *fakeTarget) Push(ctx context.Context, changes []change.Change) error {
	paths := change.Paths(changes)
	var err error
	if f.push != nil {
		err = f.push(ctx, paths)
	}
	return f.done(paths, err)
}

func (f *fakeTarget) FullPush(ctx context.Context, _ []string) error {
	var err error
	if f.full != nil {
		err = f.full(ctx)
	}
	return f.done([]string{queue.FullSync}, err)
}

func (f *fakeTarget) Close() error { return nil }

func (f *fakeTarget) done(paths []string, err error) error {
	if err == nil {
		f.mu.Lock()
		f.pushed = append(f.pushed, paths...)
		f.mu.Unlock()
	}
	return err
}

func (f *fakeTarget) pushedPaths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.pushed...)
}

func failure(o pusher.Outcome, code int) error {
	return &pusher.PushError{Outcome: o, Code: code, Meaning: "test", Err: fmt.Errorf("exit %d", code)}
}

// newPool is a pool of one fake target over a fresh queue, not running:
// as `sersyncd retry` finds it when no daemon runs.
func newPool(t *testing.T, tg *fakeTarget, opt pusher.Options) (*queue.Queue, *pusher.Pool) {
	t.Helper()
	q, _ := testutil.OpenQueue(t, queue.Open, "", tg.name)
	opt.Log = testutil.QuietLog()
	return q, pusher.New(q, []pusher.Target{tg}, opt)
}

// run runs p until the test ends, and returns what kills its pushes.
func run(t *testing.T, p *pusher.Pool) (kill context.CancelFunc) {
	t.Helper()
	stop, cancelStop := context.WithCancel(context.Background())
	hard, kill := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(stop, hard) }()
	t.Cleanup(func() { cancelStop(); kill(); <-done })
	return kill
}

// failed queues paths for target t and records a failed push of them, as
// a live push that failed leaves them (parked for park when positive).
func failed(t *testing.T, q *queue.Queue, park time.Duration, paths ...string) {
	t.Helper()
	if err := q.Add(paths); err != nil {
		t.Fatal(err)
	}
	items, err := q.Claim("t", len(paths))
	if err != nil || len(items) != len(paths) {
		t.Fatalf("claim: %v %v", items, err)
	}
	if err := q.Fail("t", items, queue.Failure{ExitCode: 10, Error: "exit 10", Park: park}); err != nil {
		t.Fatal(err)
	}
}

// TestReplay: a replay claims every record of its target, failed, parked
// or never tried, pushes them through the pool, and reports what it
// pushed and what still fails.
func TestReplay(t *testing.T) {
	tests := []struct {
		name       string
		push       func(ctx context.Context, paths []string) error
		setup      func(t *testing.T, q *queue.Queue)
		target     string
		wantErr    string
		want       Result
		wantPushed []string
		wantLeft   int // records still queued
	}{
		{
			name:       "failed records are pushed",
			setup:      func(t *testing.T, q *queue.Queue) { failed(t, q, 0, "a", "b") },
			target:     "t",
			want:       Result{Target: "t", Replayed: 2},
			wantPushed: []string{"a", "b"},
		},
		{
			name:       "a parked record and one never tried",
			setup:      func(t *testing.T, q *queue.Queue) { failed(t, q, time.Hour, "a"); mustAdd(t, q, "b") },
			target:     "",
			want:       Result{Target: "t", Replayed: 2},
			wantPushed: []string{"a", "b"},
		},
		{
			name:       "the full push a record asks for",
			setup:      func(t *testing.T, q *queue.Queue) { mustAdd(t, q, queue.FullSync) },
			target:     "t",
			want:       Result{Target: "t", Replayed: 1},
			wantPushed: []string{queue.FullSync},
		},
		{
			name:     "a target that still refuses keeps its records",
			push:     func(context.Context, []string) error { return failure(pusher.Refused, 10) },
			setup:    func(t *testing.T, q *queue.Queue) { failed(t, q, 0, "a", "b") },
			target:   "t",
			want:     Result{Target: "t", Replayed: 2, StillFailing: 2, Reason: "exit 10"},
			wantLeft: 2,
		},
		{
			name:     "unknown target",
			setup:    func(t *testing.T, q *queue.Queue) { failed(t, q, 0, "a") },
			target:   "nope",
			wantErr:  `unknown target "nope"`,
			wantLeft: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := &fakeTarget{name: "t", push: tc.push}
			q, p := newPool(t, tg, pusher.Options{Workers: 1, BackoffMax: time.Hour})
			tc.setup(t, q)
			res, err := NewReplayer(q, p).Replay(context.Background(), tc.target)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Replay: %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("Replay: %v", err)
			case len(res) != 1 || res[0] != tc.want:
				t.Fatalf("Replay = %+v, want [%+v]", res, tc.want)
			}
			if got := tg.pushedPaths(); strings.Join(got, " ") != strings.Join(tc.wantPushed, " ") {
				t.Errorf("pushed %q, want %q", got, tc.wantPushed)
			}
			if n := q.Pending("t"); n != tc.wantLeft {
				t.Errorf("%d records left, want %d", n, tc.wantLeft)
			}
		})
	}
}

func mustAdd(t *testing.T, q *queue.Queue, paths ...string) {
	t.Helper()
	if err := q.Add(paths); err != nil {
		t.Fatal(err)
	}
}

// A replay that runs while a live push (its backoff over) holds the failed
// records cannot take them: it waits for that push and reports what still
// fails, never "still failing 0" about a target that is still down.
func TestReplayBesideALivePushOfTheFailures(t *testing.T) {
	tests := []struct {
		name      string
		heldPush  error
		wantStill int
	}{
		{"the held push fails too", failure(pusher.ConnectionLost, 10), 2},
		{"the held push succeeds", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			release := make(chan struct{})
			tg := &fakeTarget{name: "t", push: func(ctx context.Context, _ []string) error {
				switch calls.Add(1) {
				case 1:
					return failure(pusher.ConnectionLost, 10)
				case 2:
					<-release
					return tc.heldPush
				}
				return failure(pusher.ConnectionLost, 10)
			}}
			q, p := newPool(t, tg, pusher.Options{BackoffMin: 300 * time.Millisecond, Workers: 1, BackoffMax: time.Hour})
			run(t, p)
			mustAdd(t, q, "a", "b")
			testutil.Eventually(t, 5*time.Second, "the live retry holds the failed records", func() bool {
				_, held, _ := q.Failing("t")
				return calls.Load() == 2 && held == 2
			})
			done := make(chan []Result, 1)
			go func() {
				res, err := NewReplayer(q, p).Replay(context.Background(), "t")
				if err != nil {
					t.Error(err)
				}
				done <- res
			}()
			select {
			case res := <-done:
				t.Fatalf("the replay returned %+v while the failures were still being pushed", res)
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			select {
			case res := <-done:
				if len(res) != 1 || res[0].Replayed != 0 || res[0].StillFailing != tc.wantStill {
					t.Fatalf("replay = %+v, want replayed 0, still failing %d", res, tc.wantStill)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the replay did not end after the held push did")
			}
		})
	}
}

// TestReplayDiesWithThePoolsPushes: a replay asked for over the control
// socket ends when the daemon's pushes are killed (a stop past its drain
// time), its records kept, instead of outliving them.
func TestReplayDiesWithThePoolsPushes(t *testing.T) {
	entered := make(chan struct{}, 1)
	tg := &fakeTarget{name: "t", push: func(ctx context.Context, paths []string) error {
		if paths[0] == "live" {
			return nil
		}
		select {
		case entered <- struct{}{}:
		default: // the running pool may claim it too once the replay ends
		}
		<-ctx.Done()
		return fmt.Errorf("killed: %w", ctx.Err())
	}}
	q, p := newPool(t, tg, pusher.Options{Workers: 1, BackoffMin: time.Hour, BackoffMax: time.Hour})
	failed(t, q, time.Hour, "a") // parked: the running pool leaves it to the replay
	kill := run(t, p)
	// A live push: the pool runs, under the context that kills its pushes.
	mustAdd(t, q, "live")
	testutil.Eventually(t, 5*time.Second, "the live push", func() bool { return q.Pending("t") == 1 })
	done := make(chan []Result, 1)
	go func() {
		res, _ := NewReplayer(q, p).Replay(context.Background(), "t")
		done <- res
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the replay did not push")
	}
	kill()
	select {
	case res := <-done:
		if len(res) != 1 || res[0].Replayed != 1 || res[0].StillFailing != 1 {
			t.Errorf("replay = %+v, want replayed 1, still failing 1", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the replay outlived the pool's pushes")
	}
	if n := q.Pending("t"); n != 1 {
		t.Errorf("%d records left, want the killed one", n)
	}
}
