// Package pusher drains the queue into the targets: per target, batches of
// pending paths, one push per batch, a shared pool of workers that no slow
// or dead target can take over. It knows a target only through Target and
// the Outcome of its pushes.
package pusher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/pace"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/status"
)

// Queue is what the pusher needs of the queue.
type Queue interface {
	Claim(target string, max int) ([]queue.Item, error)
	ClaimForReplay(target string, max int, began time.Time) ([]queue.Item, error)
	Ack(target string, items []queue.Item) error
	Fail(target string, items []queue.Item, f queue.Failure) error
	Release(target string, items []queue.Item)
	Unpark(target string)
	LoadParks(target string) (time.Time, error)
	AddChanges(targets []string, changes []change.Change) error
	Notify(target string) <-chan struct{}
	Pending(target string) int
	Failing(target string) (failed, held int, err error)
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

// busyBatch and busyPushInterval: in a stream of pushes (pace.Stream: of
// at least busyBatch paths each, within 2×busyPushInterval of each other),
// the target's next push starts no sooner than busyPushInterval after the
// last one.
const (
	defaultBusyBatch        = 4
	defaultBusyPushInterval = 250 * time.Millisecond
)

// minParallelBacklog is the backlog (paths not yet in flight) from which a
// target runs a second push beside the first.
const defaultMinParallelBacklog = 1000

// splitBudget bounds the extra pushes spent isolating the paths that
// make a batch end in a partial transfer.
const defaultSplitBudget = 16

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

func (p *Pool) runner(name string) (*targetRunner, error) {
	for _, tr := range p.targets {
		if tr.target.Name() == name {
			return tr, nil
		}
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

func (p *Pool) selected(name string) ([]*targetRunner, error) {
	if name == "" {
		return p.targets, nil
	}
	tr, err := p.runner(name)
	if err != nil {
		return nil, err
	}
	return []*targetRunner{tr}, nil
}

func (p *Pool) hardContext() context.Context {
	p.hardMu.Lock()
	defer p.hardMu.Unlock()
	return p.hard
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

func (tr *targetRunner) run(stop, hard context.Context) {
	p := tr.pool
	name := tr.target.Name()
	notify := p.q.Notify(name)
	done := make(chan int, tr.limit+1) // a finished push's path count
	inflight, inflightPaths := 0, 0
	pushes := pace.Stream{Window: 2 * p.opt.tune.busyPushInterval, MinBatch: p.opt.tune.busyBatch}
	spaced := false // the next push has waited its turn already
	finished := func(n int) { inflight--; inflightPaths -= n }
	// Paths an earlier process parked are retried when their park ends.
	if next, err := p.q.LoadParks(name); err != nil {
		p.opt.Log.WithError(err).WithField("target", name).Error("read parked paths; they wait for the next change or replay")
	} else if !next.IsZero() {
		tr.wakeBy(next.Add(10 * time.Millisecond))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	beat := p.opt.Heartbeat.Loop("push: " + name)
	defer beat.Stop()
	for {
		beat.Busy()
		if wait := tr.backoffLeft(); wait > 0 {
			if probe := tr.probeLeft(); probe <= 0 {
				tr.probe(stop)
				continue
			} else if probe < wait {
				wait = probe
			}
			beat.Idle()
			if !tr.pause(stop, wait, done, finished) {
				return
			}
			continue
		}
		// Under a steady stream, pushes spaced busyPushInterval apart carry
		// more paths each: fewer pushes, a lag still far under a second.
		// A lone change (a batch of one or two) is never held back, nor is
		// the end of a short burst: files written aside and renamed into
		// place come as two batches, the temporary names first, and the
		// second must not wait for a stream that is not there.
		if inflight == 0 && !spaced && pushes.On() {
			if wait := p.opt.tune.busyPushInterval - time.Since(pushes.Last()); wait > 0 {
				beat.Idle()
				if !tr.pause(stop, wait, done, finished) {
					return
				}
				spaced = true
				continue
			}
		}
		claimed := false
		// A second push for the same target only pays off for a large
		// backlog; a small one waits and goes out as one batch when the
		// running push ends, which keeps the count of pushes low.
		// A failing target gets one at a time: a retry that finds it still
		// down is one push, not one per worker of its share.
		if inflight == 0 || (inflight < tr.limit && !tr.failing() && p.q.Pending(name)-inflightPaths >= p.opt.tune.minParallelBacklog) {
			beat.Idle() // waiting for a worker
			select {
			case p.sem <- struct{}{}:
				beat.Busy()
				if stop.Err() != nil { // select picks at random among ready cases
					<-p.sem
					return
				}
				items, err := p.q.Claim(name, p.opt.BatchMax)
				if err != nil {
					p.opt.Log.WithError(err).WithField("target", name).Error("claim batch")
				}
				if len(items) == 0 {
					<-p.sem
					break
				}
				claimed = true
				wg.Add(1)
				if items[0].Path == queue.FullSync {
					// A full push can take long; it runs beside the live
					// pushes instead of in a worker's place.
					<-p.sem
					go func() {
						defer wg.Done()
						tr.fullPush(hard, items, nil)
						// Its outcome (a backoff, or records to retry)
						// is the loop's to act on: nothing else wakes it.
						tr.wake()
					}()
					break
				}
				inflight++
				inflightPaths += len(items)
				pushes.Note(time.Now(), len(items))
				spaced = false
				go func() {
					defer wg.Done()
					defer func() { <-p.sem; done <- len(items) }()
					budget := p.opt.tune.splitBudget
					tr.pushBatch(hard, items, &budget)
				}()
			case <-stop.Done():
				return
			case n := <-done:
				finished(n)
				continue
			}
		}
		if claimed {
			continue // maybe more is ready for another worker
		}
		parked, stopTimer := tr.parkTimer()
		beat.Idle()
		select {
		case <-stop.Done():
			stopTimer()
			return
		case <-notify:
		case <-tr.kick:
		case n := <-done:
			finished(n)
		case <-parked:
		}
		stopTimer()
	}
}

// pause waits d, or until the target is kicked, a push of it finishes
// (counted with finished) or stop ends; it reports whether to go on.
func (tr *targetRunner) pause(stop context.Context, d time.Duration, done <-chan int, finished func(int)) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-stop.Done():
		return false
	case <-timer.C:
	case <-tr.kick:
	case n := <-done:
		finished(n)
	}
	return true
}

// wakeBy makes the target's loop look at the queue again by t, when a
// parked path becomes claimable.
func (tr *targetRunner) wakeBy(t time.Time) {
	tr.mu.Lock()
	if tr.wakeAt.IsZero() || t.Before(tr.wakeAt) {
		tr.wakeAt = t
	}
	tr.mu.Unlock()
	tr.wake()
}

// wake makes the target's loop look at its state and the queue again.
func (tr *targetRunner) wake() {
	select {
	case tr.kick <- struct{}{}:
	default:
	}
}

// parkTimer returns a channel that fires when the earliest park ends (nil
// when nothing is parked), clearing it once it has.
func (tr *targetRunner) parkTimer() (<-chan time.Time, func()) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.wakeAt.IsZero() {
		return nil, func() {}
	}
	wait := time.Until(tr.wakeAt)
	if wait <= 0 {
		tr.wakeAt = time.Time{}
		ch := make(chan time.Time, 1)
		ch <- time.Now()
		return ch, func() {}
	}
	timer := time.NewTimer(wait)
	return timer.C, func() { timer.Stop() }
}

// failing reports whether the target's last push failed.
func (tr *targetRunner) failing() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.failures > 0
}

func (tr *targetRunner) backoffLeft() time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return time.Until(tr.retryAt)
}

// pushBatch pushes items in one Target.Push and records the outcome; it returns
// how many paths still fail and why. A partial push (Outcome Partial) of
// several paths is split in halves, within budget, so one bad file never
// holds back the rest of its batch; a path that fails alone is parked while
// the target goes on.
func (tr *targetRunner) pushBatch(ctx context.Context, items []queue.Item, budget *int) (int, error) {
	p := tr.pool
	name := tr.target.Name()
	paths := make([]string, len(items))
	changes := make([]change.Change, len(items))
	for i, it := range items {
		paths[i], changes[i] = it.Path, it.Change
	}
	tr.mu.Lock()
	fullAtStart, fullStartsAtStart, failSeq := tr.fullRunning > 0, tr.fullStarts, tr.failSeq
	tr.mu.Unlock()
	start := time.Now()
	err := tr.target.Push(ctx, changes)
	took := time.Since(start)
	if err != nil && ctx.Err() != nil {
		// Killed by shutdown: not the target's fault; the records stay.
		p.q.Release(name, items)
		return len(items), err
	}
	if p.opt.Observer != nil {
		p.opt.Observer.Pushed(name, paths, took, err)
	}
	log := p.opt.Log.WithFields(logrus.Fields{"target": name, "batch": len(items), "duration": took.Round(time.Millisecond)})
	if err == nil {
		if aerr := p.q.Ack(name, items); aerr != nil {
			log.WithError(aerr).Error("acknowledge push; it will be pushed again")
		}
		tr.succeeded(log)
		tr.afterLivePush(log, changes, fullAtStart, fullStartsAtStart)
		log.WithField("exit", 0).Debug("pushed")
		return 0, nil
	}
	partial := OutcomeOf(err) == Partial
	if partial && len(items) > 1 && *budget >= 2 {
		*budget -= 2
		half := len(items) / 2
		n1, err1 := tr.pushBatch(ctx, items[:half], budget)
		n2, err2 := tr.pushBatch(ctx, items[half:], budget)
		return n1 + n2, errors.Join(err1, err2)
	}
	f := queue.Failure{ExitCode: -1, Error: err.Error()}
	if code, _, ok := CodeOf(err); ok {
		f.ExitCode = code
		log = log.WithField("exit", code)
	}
	if partial && len(items) == 1 {
		// On the backoff of its own failures in a row: a file made
		// readable a moment later is not left for BackoffMax.
		f.Park = p.backoff(items[0].Attempts + 1)
		if ferr := p.q.Fail(name, items, f); ferr != nil {
			log.WithError(ferr).Error("record failure")
		}
		// After Fail, whose clock set the park's end.
		tr.wakeBy(time.Now().Add(f.Park + 10*time.Millisecond))
		log.WithError(err).Warnf("push of %q failed; it is retried in %s, the rest of the target goes on", paths[0], f.Park)
		return 1, err
	}
	if ferr := p.q.Fail(name, items, f); ferr != nil {
		log.WithError(ferr).Error("record failure")
	}
	tr.failed(log, err, failSeq)
	return len(items), err
}

// fullPush pushes the whole tree. Live pushes go on meanwhile, and the
// paths they push are pushed once more after it: its --delete or its older
// copy of a file may have undone them.
func (tr *targetRunner) fullPush(ctx context.Context, items []queue.Item, extraExcludes []string) error {
	p := tr.pool
	name := tr.target.Name()
	tr.mu.Lock()
	tr.fullRunning++
	tr.fullStarts++
	failSeq := tr.failSeq
	tr.mu.Unlock()
	log := p.opt.Log.WithField("target", name)
	log.Info("full push started")
	start := time.Now()
	err := tr.target.FullPush(ctx, extraExcludes)
	took := time.Since(start)
	defer tr.endFullPush(log)
	if err != nil && ctx.Err() != nil {
		p.q.Release(name, items)
		return err
	}
	if p.opt.Observer != nil {
		p.opt.Observer.Pushed(name, []string{queue.FullSync}, took, err)
	}
	log = log.WithField("duration", took.Round(time.Millisecond))
	if err == nil {
		if aerr := p.q.Ack(name, items); aerr != nil {
			log.WithError(aerr).Error("acknowledge full push; it will run again")
		}
		tr.mu.Lock()
		tr.cutOff = false // this push has just cleared the leftovers
		tr.mu.Unlock()
		tr.succeeded(log)
		log.Info("full push done")
		return nil
	}
	f := queue.Failure{ExitCode: -1, Error: err.Error()}
	if code, _, ok := CodeOf(err); ok {
		f.ExitCode = code
	}
	if ferr := p.q.Fail(name, items, f); ferr != nil {
		log.WithError(ferr).Error("record failure")
	}
	tr.failed(log, err, failSeq)
	return err
}

func (tr *targetRunner) endFullPush(log logrus.FieldLogger) {
	tr.mu.Lock()
	tr.fullRunning--
	var again []change.Change
	if tr.fullRunning == 0 {
		for _, c := range tr.touched {
			again = append(again, c)
		}
		tr.touched = nil
	}
	tr.mu.Unlock()
	if len(again) > 0 {
		if err := tr.pool.q.AddChanges([]string{tr.target.Name()}, again); err != nil {
			log.WithError(err).Error("queue paths pushed during the full push again")
		}
	}
}

// FullPushAll pushes the whole tree to every target at once (the crontab
// job), with extra exclude patterns, and waits for all of them.
func (p *Pool) FullPushAll(extraExcludes []string) error {
	ctx := p.hardContext()
	errs := make([]error, len(p.targets))
	var wg sync.WaitGroup
	for i, tr := range p.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tr.fullPush(ctx, nil, extraExcludes); err != nil {
				errs[i] = fmt.Errorf("full push to %s: %w", tr.target.Name(), err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ReplayResult says how a replay of one target's failures went.
type ReplayResult struct {
	Target       string `json:"target"`
	Replayed     int    `json:"replayed"`
	StillFailing int    `json:"still_failing"`
	Reason       string `json:"reason,omitempty"`
}

// Replay pushes every record of the named target (all targets when name is
// empty) now, failed or held back by a backoff, one batched push per target
// and batch, and ends the backoffs.
func (p *Pool) Replay(ctx context.Context, name string) ([]ReplayResult, error) {
	runners, err := p.selected(name)
	if err != nil {
		return nil, err
	}
	// A replay asked for over the control socket must die with the daemon's
	// pushes, not outlive them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.hardContext(), cancel)()
	results := make([]ReplayResult, len(runners))
	var wg sync.WaitGroup
	for i, tr := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = tr.replay(ctx)
		}()
	}
	wg.Wait()
	p.RetryNow()
	return results, nil
}

func (tr *targetRunner) replay(ctx context.Context) ReplayResult {
	p := tr.pool
	name := tr.target.Name()
	res := ReplayResult{Target: name}
	start := time.Now()
	for ctx.Err() == nil {
		items, err := p.q.ClaimForReplay(name, p.opt.BatchMax, start)
		if err != nil {
			res.Reason = err.Error()
			break
		}
		if len(items) == 0 {
			break
		}
		res.Replayed += len(items)
		var failed int
		if items[0].Path == queue.FullSync {
			if err = tr.fullPush(ctx, items, nil); err != nil {
				failed = 1
			}
		} else {
			budget := tr.pool.opt.tune.splitBudget
			failed, err = tr.pushBatch(ctx, items, &budget)
		}
		res.StillFailing += failed
		if err != nil {
			res.Reason = err.Error()
		}
		if failed == len(items) {
			// The target refuses everything: the records keep the new
			// error, the rest waits for the next replay.
			break
		}
	}
	// A live push (its backoff over) may have held failures the replay
	// could not take: wait for its outcome, then report every record that
	// still fails, not only those the replay tried, or a replay that ran
	// beside such a push would say all is well about a target still down.
	for {
		failed, held, err := p.q.Failing(name)
		if err != nil {
			res.Reason = err.Error()
			break
		}
		if held == 0 || ctx.Err() != nil {
			res.StillFailing = max(res.StillFailing, failed)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(replayHeldPoll):
		}
	}
	return res
}

// replayHeldPoll is how often a replay looks whether a live push still
// holds failed records.
var replayHeldPoll = 50 * time.Millisecond

// afterLivePush makes sure a live push that overlapped a full push is
// pushed again once no full push runs: the full push's --delete or its
// older copy of a file may have undone it.
func (tr *targetRunner) afterLivePush(log logrus.FieldLogger, changes []change.Change, fullAtStart bool, fullStartsAtStart uint64) {
	tr.mu.Lock()
	overlapped := fullAtStart || tr.fullRunning > 0 || tr.fullStarts != fullStartsAtStart
	if !overlapped {
		tr.mu.Unlock()
		return
	}
	if tr.fullRunning > 0 {
		if tr.touched == nil {
			tr.touched = map[string]change.Change{}
		}
		for _, c := range changes {
			// The rename is done: pushed again, the path needs no hint.
			c.From = ""
			tr.touched[c.Path] = change.Merge(tr.touched[c.Path], c)
		}
		tr.mu.Unlock()
		return
	}
	tr.mu.Unlock()
	again := make([]change.Change, len(changes))
	for i, c := range changes {
		again[i] = change.Change{Path: c.Path, Tree: c.Tree}
	}
	if err := tr.pool.q.AddChanges([]string{tr.target.Name()}, again); err != nil {
		log.WithError(err).Error("queue paths pushed during a full push again")
	}
}

func (tr *targetRunner) succeeded(log logrus.FieldLogger) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.cutOff {
		// A push cut off mid-file may leave a temporary copy of it on the
		// target (rsync's ".name.XXXXXX"); pushing listed paths never
		// removes it, a full push does.
		tr.cutOff = false
		if err := tr.pool.q.AddChanges([]string{tr.target.Name()}, []change.Change{{Path: queue.FullSync}}); err != nil {
			log.WithError(err).Error("queue a full push to clear what a cut-off push left")
		} else {
			log.Info("a push was cut off: pushing the whole tree once to clear its leftovers")
		}
	}
	if tr.failures > 0 {
		log.Infof("recovered after %d failed pushes", tr.failures)
	}
	tr.failures = 0
	tr.lastErr = nil
	tr.lastOK = time.Now()
	tr.retryAt = time.Time{}
	tr.probeAt, tr.probeDown = time.Time{}, false
}

// failed counts a failed push that started when failSeq failures had been
// counted. Pushes that were in flight together (parallel batches, a full
// push beside live ones) found the target in one state: their failures are
// one failure in a row, not one each, or four batches failing in the same
// second took the backoff from 1 s to 8 s, and a minute of it to the cap.
func (tr *targetRunner) failed(log logrus.FieldLogger, err error, failSeq uint64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if OutcomeOf(err) == ConnectionLost {
		tr.cutOff = true
	}
	tr.lastErr = err
	if failSeq != tr.failSeq && tr.failures > 0 {
		log.WithError(err).Warnf("push failed (%d in a row, counted once with a push beside it); retrying in %s",
			tr.failures, time.Until(tr.retryAt).Round(time.Millisecond))
		return
	}
	tr.failSeq++
	tr.failures++
	wait := tr.pool.backoff(tr.failures)
	now := time.Now()
	tr.retryAt = now.Add(wait)
	// Probe at once: whether the target is unreachable now decides whether
	// its return, seen by a later probe, ends the backoff early.
	tr.probeAt, tr.probeDown = now, false
	log.WithError(err).Warnf("push failed (%d in a row); retrying in %s", tr.failures, wait)
}

// backoff is the wait after the n-th failure in a row: BackoffMin doubled
// with every further one, capped by BackoffMax.
func (p *Pool) backoff(n int) time.Duration {
	wait := p.opt.BackoffMin << min(max(n, 1)-1, 20)
	if wait > p.opt.BackoffMax || wait <= 0 {
		wait = p.opt.BackoffMax
	}
	return wait
}

// probeLeft is how long until the target in backoff is probed next; a
// large value when it is not to be probed.
func (tr *targetRunner) probeLeft() time.Duration {
	if _, ok := tr.target.(Prober); !ok || tr.pool.opt.ProbeEvery < 0 {
		return time.Duration(math.MaxInt64)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.probeAt.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Until(tr.probeAt)
}

// probeTimeout bounds one probe.
const defaultProbeTimeout = time.Second

// probe looks whether a target in backoff is reachable. A target that
// answers a probe after one found it unreachable has come back: its
// backoff ends now, however long it was. One that answers from the start
// failed for another reason (auth, a full disk, a module that hangs): its
// backoff runs its course, and it is not probed again until its next
// failure, so a target that is up sees no stream of connections.
func (tr *targetRunner) probe(stop context.Context) {
	ctx, cancel := context.WithTimeout(stop, tr.pool.opt.tune.probeTimeout)
	defer cancel()
	err := tr.target.(Prober).Probe(ctx)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.probeAt.IsZero() {
		return // a push succeeded meanwhile
	}
	log := tr.pool.opt.Log.WithField("target", tr.target.Name())
	switch {
	case err != nil:
		if !tr.probeDown {
			log.WithError(err).Debug("target unreachable; probing it until it answers")
		}
		tr.probeDown = true
		tr.probeAt = time.Now().Add(tr.pool.opt.ProbeEvery)
	case tr.probeDown:
		log.Infof("target answers again after %d failed pushes; pushing now instead of in %s",
			tr.failures, time.Until(tr.retryAt).Round(time.Second))
		tr.retryAt, tr.probeAt, tr.probeDown = time.Time{}, time.Time{}, false
	default:
		tr.probeAt = time.Time{}
	}
}
