// Package pusher drains the queue into the targets: per target, batches of
// pending paths, one rsync per batch, a shared pool of workers that no slow
// or dead target can take over.
package pusher

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/queue"
)

// Queue is what the pusher needs of the queue.
type Queue interface {
	Claim(target string, max int) ([]queue.Item, error)
	Ack(target string, items []queue.Item) error
	Fail(target string, items []queue.Item, f queue.Failure) error
	Release(target string, items []queue.Item)
	Notify(target string) <-chan struct{}
}

var _ Queue = (*queue.Queue)(nil)

// Observer is told about every push; metrics and the failure log hang here.
type Observer interface {
	Pushed(target string, paths []string, took time.Duration, err error)
}

// Backoff after the first failure of a target; it doubles up to the cap.
var BackoffMin = time.Second

// Options configures a Pool.
type Options struct {
	Workers    int           // rsyncs running at once over all targets
	BatchMax   int           // paths per rsync
	BackoffMax time.Duration // cap of a failing target's wait
	Log        logrus.FieldLogger
	Observer   Observer // may be nil
}

// Pool runs the pushes of every target.
type Pool struct {
	opt     Options
	q       Queue
	targets []*targetRunner
	sem     chan struct{}
}

type targetRunner struct {
	pool   *Pool
	target Target
	limit  int // rsyncs in flight for this target at most
	kick   chan struct{}

	mu       sync.Mutex
	failures int
	lastErr  error
	lastOK   time.Time
	retryAt  time.Time
}

// New creates a pool. Each target may use at most its fair share of the
// workers (rounded up), so a target whose pushes hang holds no more than
// that share.
func New(q Queue, targets []Target, opt Options) *Pool {
	if opt.Workers < 1 {
		opt.Workers = 1
	}
	if opt.BatchMax < 1 {
		opt.BatchMax = 5000
	}
	if opt.BackoffMax < BackoffMin {
		opt.BackoffMax = BackoffMin
	}
	p := &Pool{opt: opt, q: q, sem: make(chan struct{}, opt.Workers)}
	share := (opt.Workers + len(targets) - 1) / max(len(targets), 1)
	for _, t := range targets {
		p.targets = append(p.targets, &targetRunner{pool: p, target: t, limit: max(share, 1), kick: make(chan struct{}, 1)})
	}
	return p
}

// RetryNow ends every target's backoff so failed records are pushed at once.
func (p *Pool) RetryNow() {
	for _, tr := range p.targets {
		tr.mu.Lock()
		tr.retryAt = time.Time{}
		tr.mu.Unlock()
		select {
		case tr.kick <- struct{}{}:
		default:
		}
	}
}

// TargetStatus is a snapshot of one target's health.
type TargetStatus struct {
	Name                string
	ConsecutiveFailures int
	LastError           string
	LastSuccess         time.Time
	RetryAt             time.Time
}

// Status returns a snapshot per target.
func (p *Pool) Status() []TargetStatus {
	var out []TargetStatus
	for _, tr := range p.targets {
		tr.mu.Lock()
		s := TargetStatus{Name: tr.target.Name(), ConsecutiveFailures: tr.failures, LastSuccess: tr.lastOK, RetryAt: tr.retryAt}
		if tr.lastErr != nil {
			s.LastError = tr.lastErr.Error()
		}
		tr.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// Run pushes until stop ends, then waits for the pushes in flight. Those
// run under hard: cancelling it kills them, and their records stay queued.
func (p *Pool) Run(stop, hard context.Context) {
	var wg sync.WaitGroup
	for _, tr := range p.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.run(stop, hard)
		}()
	}
	wg.Wait()
}

func (tr *targetRunner) run(stop, hard context.Context) {
	p := tr.pool
	name := tr.target.Name()
	notify := p.q.Notify(name)
	done := make(chan struct{}, tr.limit)
	inflight := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		// Wait out a backoff, unless told to retry now.
		if wait := tr.backoffLeft(); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-stop.Done():
				timer.Stop()
				return
			case <-timer.C:
			case <-tr.kick:
				timer.Stop()
			case <-done:
				timer.Stop()
				inflight--
			}
			continue
		}
		claimed := false
		if inflight < tr.limit {
			select {
			case p.sem <- struct{}{}:
				items, err := p.q.Claim(name, p.opt.BatchMax)
				if err != nil {
					p.opt.Log.WithError(err).WithField("target", name).Error("claim batch")
				}
				if len(items) == 0 {
					<-p.sem
					break
				}
				claimed = true
				inflight++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-p.sem; done <- struct{}{} }()
					tr.push(hard, items)
				}()
			case <-stop.Done():
				return
			case <-done:
				inflight--
				continue
			}
		}
		if claimed {
			continue // maybe more is ready for another worker
		}
		select {
		case <-stop.Done():
			return
		case <-notify:
		case <-tr.kick:
		case <-done:
			inflight--
		}
	}
}

func (tr *targetRunner) backoffLeft() time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return time.Until(tr.retryAt)
}

// push runs one batch. A partial transfer (rsync exit 23) of several paths
// is split in halves until the paths that fail are alone, so one bad file
// never holds back the rest of its batch.
func (tr *targetRunner) push(ctx context.Context, items []queue.Item) {
	p := tr.pool
	name := tr.target.Name()
	paths := make([]string, len(items))
	for i, it := range items {
		paths[i] = it.Path
	}
	start := time.Now()
	var err error
	if len(items) == 1 && items[0].Path == queue.FullSync {
		p.opt.Log.WithField("target", name).Info("full push started")
		err = tr.target.FullPush(ctx)
	} else {
		err = tr.target.Push(ctx, paths)
	}
	took := time.Since(start)
	if ctx.Err() != nil && err != nil {
		// Killed by shutdown: not the target's fault; the records stay.
		p.q.Release(name, items)
		return
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
		log.WithField("exit", 0).Debug("pushed")
		return
	}
	var exitErr *ExitError
	if errors.As(err, &exitErr) && exitErr.Code == 23 && len(items) > 1 {
		half := len(items) / 2
		tr.push(ctx, items[:half])
		tr.push(ctx, items[half:])
		return
	}
	f := queue.Failure{ExitCode: -1, Error: err.Error()}
	if exitErr != nil {
		f.ExitCode = exitErr.Code
		log = log.WithField("exit", exitErr.Code)
	}
	if ferr := p.q.Fail(name, items, f); ferr != nil {
		log.WithError(ferr).Error("record failure")
	}
	tr.failed(log, err)
}

func (tr *targetRunner) succeeded(log logrus.FieldLogger) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.failures > 0 {
		log.Infof("recovered after %d failed pushes", tr.failures)
	}
	tr.failures = 0
	tr.lastErr = nil
	tr.lastOK = time.Now()
	tr.retryAt = time.Time{}
}

func (tr *targetRunner) failed(log logrus.FieldLogger, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.failures++
	tr.lastErr = err
	wait := BackoffMin << min(tr.failures-1, 20)
	if wait > tr.pool.opt.BackoffMax || wait <= 0 {
		wait = tr.pool.opt.BackoffMax
	}
	tr.retryAt = time.Now().Add(wait)
	log.WithError(err).Warnf("push failed (%d in a row); retrying in %s", tr.failures, wait)
}
