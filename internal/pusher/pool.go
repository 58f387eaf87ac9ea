// Package pusher drains the queue into the targets: per target, batches of
// pending paths, one push per batch, a shared pool of workers that no slow
// or dead target can take over. It knows a target only through Target and
// the Outcome of its pushes.
package pusher

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/status"
)

// Queue is what the pusher needs of the queue.
type Queue interface {
	Claim(target string, max int) ([]queue.Item, error)
	Ack(target string, items []queue.Item) error
	Fail(target string, items []queue.Item, f queue.Failure) error
	Release(target string, items []queue.Item)
	Unpark(target string)
	LoadParks(target string) (time.Time, error)
	AddChanges(targets []string, changes []change.Change) error
	Notify(target string) <-chan struct{}
	Pending(target string) int
}

var _ Queue = (*queue.Queue)(nil)

// Observer is told about every push; metrics and the failure log hang here.
// paths is []string{queue.FullSync} for a push of the whole tree.
type Observer interface {
	Pushed(target string, paths []string, took time.Duration, err error)
}

// Observers tells each of its members.
type Observers []Observer

// Pushed implements Observer.
func (os Observers) Pushed(target string, paths []string, took time.Duration, err error) {
	for _, o := range os {
		o.Pushed(target, paths, took, err)
	}
}

// DefaultBackoffMin is Options.BackoffMin's default.
const DefaultBackoffMin = time.Second

// tuning holds the pool's knobs, each default declared once beside its
// reason. Like syncthing's watchaggregator's caps they are not meant to
// be changed, but must be changeable for tests, through the Options a
// test passes rather than a global. A zero field takes its default.
type tuning struct {
	busyBatch          int
	busyPushInterval   time.Duration
	minParallelBacklog int
	splitBudget        int
	probeTimeout       time.Duration
}

// withDefaults fills the zero fields of t.
func (t tuning) withDefaults() tuning {
	t.busyBatch = cmp.Or(t.busyBatch, defaultBusyBatch)
	t.busyPushInterval = cmp.Or(t.busyPushInterval, defaultBusyPushInterval)
	t.minParallelBacklog = cmp.Or(t.minParallelBacklog, defaultMinParallelBacklog)
	t.splitBudget = cmp.Or(t.splitBudget, defaultSplitBudget)
	t.probeTimeout = cmp.Or(t.probeTimeout, defaultProbeTimeout)
	return t
}

// Options configures a Pool.
type Options struct {
	Workers    int           // pushes running at once over all targets
	BatchMax   int           // paths per push
	BackoffMax time.Duration // cap of a failing target's wait, and of a failing path's park
	// BackoffMin is the wait after a target's first failure; it doubles
	// with every further one up to BackoffMax. Default DefaultBackoffMin;
	// exported, unlike the other knobs, because the rsync package's
	// integration test shortens an hour's clock with it.
	BackoffMin time.Duration
	// ProbeEvery: while a target that did not answer backs off, a Prober
	// target is probed this often, and pushed as soon as it answers again.
	// Default DefaultProbeEvery; negative: never.
	ProbeEvery time.Duration
	Log        logrus.FieldLogger
	Observer   Observer // may be nil
	// Heartbeat, when set, is told when each target's loop works and
	// waits, so systemd's watchdog can see one stuck.
	Heartbeat *heartbeat.Registry

	tune tuning
}

// DefaultProbeEvery is Options.ProbeEvery's default: a target that comes
// back is pushed within this (and a push) of answering again, however long
// its backoff, while one still down sees a TCP connect, not a push.
const DefaultProbeEvery = 2 * time.Second

// Pool runs the pushes of every target.
type Pool struct {
	opt     Options
	q       Queue
	targets []*targetRunner
	sem     chan struct{}

	hardMu sync.Mutex
	hard   context.Context // Run's kill context, for pushes started from outside
}

type targetRunner struct {
	pool   *Pool
	target Target
	limit  int // pushes in flight for this target at most
	kick   chan struct{}

	mu          sync.Mutex
	failures    int
	failSeq     uint64    // failures ever counted: a push started before the last one failed with it
	probeAt     time.Time // when to probe a target in backoff next (zero: not at all)
	probeDown   bool      // a probe since the last failure found the target unreachable
	lastErr     error
	lastOK      time.Time
	retryAt     time.Time
	fullRunning int
	fullStarts  uint64                   // full pushes started so far: tells a live push it overlapped one
	cutOff      bool                     // a push was cut off: its temp files may litter the target
	wakeAt      time.Time                // when the earliest parked path may be claimed again
	touched     map[string]change.Change // acked while a full push ran: pushed again after it
}

// New creates a pool. Each target may use at most its fair share of the
// workers (rounded up), so a target whose pushes hang holds no more than
// that share.
func New(q Queue, targets []Target, opt Options) *Pool {
	if opt.Workers < 1 {
		opt.Workers = 1
	}
	if opt.BatchMax < 1 {
		opt.BatchMax = config.DefaultBatchMax
	}
	if opt.BackoffMin <= 0 {
		opt.BackoffMin = DefaultBackoffMin
	}
	if opt.BackoffMax < opt.BackoffMin {
		opt.BackoffMax = opt.BackoffMin
	}
	opt.tune = opt.tune.withDefaults()
	if opt.ProbeEvery == 0 {
		opt.ProbeEvery = DefaultProbeEvery
	}
	p := &Pool{opt: opt, q: q, sem: make(chan struct{}, opt.Workers), hard: context.Background()}
	share := (opt.Workers + len(targets) - 1) / max(len(targets), 1)
	for _, t := range targets {
		p.targets = append(p.targets, &targetRunner{pool: p, target: t, limit: max(share, 1), kick: make(chan struct{}, 1)})
	}
	return p
}

// Names returns the target names.
func (p *Pool) Names() []string {
	names := make([]string, len(p.targets))
	for i, tr := range p.targets {
		names[i] = tr.target.Name()
	}
	return names
}

// BatchMax is the most records one push carries.
func (p *Pool) BatchMax() int { return p.opt.BatchMax }

func (p *Pool) runner(name string) (*targetRunner, error) {
	for _, tr := range p.targets {
		if tr.target.Name() == name {
			return tr, nil
		}
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

func (p *Pool) hardContext() context.Context {
	p.hardMu.Lock()
	defer p.hardMu.Unlock()
	return p.hard
}

// Killable returns a context that ends with ctx or when the pool's pushes
// are killed (Run's hard context): work that pushes beside the pool, such
// as a replay asked for over the control socket, must die with the
// daemon's pushes, not outlive them.
func (p *Pool) Killable(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.hardContext(), cancel)
	return ctx, func() { stop(); cancel() }
}

// RetryNow ends every target's backoff and every path's park, so all that
// waits is pushed at once.
func (p *Pool) RetryNow() {
	for _, tr := range p.targets {
		p.q.Unpark(tr.target.Name())
		tr.mu.Lock()
		tr.retryAt = time.Time{}
		tr.mu.Unlock()
		select {
		case tr.kick <- struct{}{}:
		default:
		}
	}
}

// Status returns a snapshot per target, with the pool's part filled in:
// its health (the daemon adds the queue's counts and the last verify).
func (p *Pool) Status() []status.Target {
	var out []status.Target
	for _, tr := range p.targets {
		tr.mu.Lock()
		s := status.Target{Name: tr.target.Name(), ConsecutiveFailures: tr.failures, LastSuccess: tr.lastOK, FullPushRunning: tr.fullRunning > 0}
		if time.Now().Before(tr.retryAt) {
			s.RetryAt = tr.retryAt
		}
		if tr.lastErr != nil {
			s.LastError = tr.lastErr.Error()
		}
		tr.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// Run pushes until stop ends, then waits for the pushes in flight and
// closes the targets. The pushes run under hard: cancelling it kills them,
// and their records stay queued.
func (p *Pool) Run(stop, hard context.Context) {
	p.hardMu.Lock()
	p.hard = hard
	p.hardMu.Unlock()
	var wg sync.WaitGroup
	for _, tr := range p.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.run(stop, hard)
			// The pool owns its targets: a reload builds new ones.
			_ = tr.target.Close()
		}()
	}
	wg.Wait()
}
