package pusher

// Pushes: a batch of paths in one Target.Push (a partial one split in halves
// to isolate the bad paths), a push of the whole tree, and what each does to
// the queue's records; live paths that overlapped a full push are pushed again.
// PushClaimed does the same for records a replay claimed.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/queue"
)

// splitBudget bounds the extra pushes spent isolating the paths that
// make a batch end in a partial transfer.
const defaultSplitBudget = 16

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

// PushClaimed pushes records of target that a replay claimed (see
// internal/retry) as the pool's own pushes are: the outcome recorded,
// failures counted towards the backoff, a partial batch split within the
// split budget, a full sync record a push of the whole tree. It returns
// how many of them still fail, and why.
func (p *Pool) PushClaimed(ctx context.Context, target string, items []queue.Item) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	tr, err := p.runner(target)
	if err != nil {
		p.q.Release(target, items)
		return len(items), err
	}
	if items[0].Path == queue.FullSync {
		if err := tr.fullPush(ctx, items, nil); err != nil {
			return 1, err
		}
		return 0, nil
	}
	budget := p.opt.tune.splitBudget
	return tr.pushBatch(ctx, items, &budget)
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
