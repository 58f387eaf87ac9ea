package pusher

// The runner loop: one goroutine per target claims batches while workers are
// free, spaces pushes under a stream, runs a second push only for a large
// backlog, and sleeps on the queue's notify, a kick, a finished push, a park's
// end or its backoff.

import (
	"context"
	"sync"
	"time"

	"github.com/sersyncd/sersyncd/internal/pace"
	"github.com/sersyncd/sersyncd/internal/queue"
)

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
	if w, ok := tr.target.(Warmer); ok && p.q.Pending(name) == 0 {
		w.Warm()
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
