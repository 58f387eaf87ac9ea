package watch

// Commits: the flush goroutine hands settled paths to the sink, spaced
// under a stream, keeps them in memory while the sink refuses them, and
// falls back to one full push when that lasts.

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"time"
)

// busyCommitGap spaces commits, in multiples of Settle, while changes keep
// coming: fewer fsyncs and larger batches, for a lag that stays small.
const defaultBusyCommitGap time.Duration = 5

// busyPaths is the least commit size that counts towards a stream
// (pace.Stream), after which commits are busyCommitGap×Settle apart.
const busyPaths = 4

// shrinkMapsFrom is how many entries must have gone from a map before it
// is replaced by a smaller one.
const shrinkMapsFrom = 1024

// maxPostpone bounds how many times in a row (about a millisecond each) a
// flush waits for the event reader to catch up.
const maxPostpone = 20

// requestFullSync tells the sink that changes may have been missed, and
// why, which asks for a push of the whole tree; when the sink refuses (the
// queue's disk is full), flushLoop asks again until it takes it.
func (w *Watcher) requestFullSync(why string) {
	if err := w.opt.Sink.MarkMissed(why); err != nil {
		w.opt.Log.WithError(err).Error("queue full push; trying again every second")
		w.statMu.Lock()
		if w.fullSyncOwed == "" {
			w.fullSyncOwed = why
		}
		w.statMu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// retryFullSync asks again for a full sync the sink refused before.
func (w *Watcher) retryFullSync() error {
	w.statMu.Lock()
	owed := w.fullSyncOwed
	w.statMu.Unlock()
	if owed == "" {
		return nil
	}
	if err := w.opt.Sink.MarkMissed(owed); err != nil {
		return fmt.Errorf("queue full push: %w", err)
	}
	w.statMu.Lock()
	w.fullSyncOwed = ""
	w.statMu.Unlock()
	w.opt.Log.Info("full push queued")
	return nil
}

// commitFallbackAfter: when the queue has refused changes this long (its
// disk is full), the watcher asks for one full push instead and forgets the
// changes it holds, which the full push covers; memory stays bounded and a
// batch too big for the space left cannot block everything.
const defaultCommitFallbackAfter = 10 * time.Second

// commitRetryEvery spaces the attempts to commit while the queue refuses.
var commitRetryEvery = time.Second

func (w *Watcher) flushLoop(ctx context.Context, fatal <-chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var failingSince, loggedAt time.Time
	beat := w.opt.Heartbeat.Loop("watch: commit to queue")
	defer beat.Stop()
	for {
		beat.Busy()
		next, err := w.flushReady()
		if err == nil {
			err = w.retryFullSync()
		}
		now := time.Now()
		switch {
		case err != nil:
			held := w.held()
			switch {
			case failingSince.IsZero():
				failingSince, loggedAt = now, now
				w.opt.Log.WithError(err).WithField("held", held).Errorf("commit changes to queue; keeping them in memory and trying again every %s", commitRetryEvery)
			case now.Sub(loggedAt) >= 30*time.Second:
				loggedAt = now
				w.opt.Log.WithError(err).WithField("held", held).Errorf("still cannot commit changes to queue (for %s)", now.Sub(failingSince).Round(time.Second))
			}
			if now.Sub(failingSince) >= w.opt.tune.commitFallbackAfter && held > 0 {
				w.fallBackToFullSync(held)
			}
			next = commitRetryEvery
		case !failingSince.IsZero():
			w.opt.Log.Infof("the queue accepts changes again after %s", now.Sub(failingSince).Round(time.Millisecond))
			failingSince = time.Time{}
		}
		// While paths are pending, next is at most the settle time, so a
		// fresh change never needs an earlier look than the timer gives.
		var timeout <-chan time.Time
		if next > 0 {
			timer.Reset(next)
			timeout = timer.C
		}
		wake := w.wake
		if !failingSince.IsZero() {
			wake = nil // new changes wait for the next attempt
		}
		beat.Idle()
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return err
		case <-timeout:
		case <-wake:
			if next > 0 && !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// held returns how many changed paths wait in memory.
func (w *Watcher) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// fallBackToFullSync queues a full push and, once it is durable, forgets
// the paths recorded before: the full push reads the tree after they
// changed.
func (w *Watcher) fallBackToFullSync(held int) {
	before := time.Now()
	if err := w.opt.Sink.MarkMissed(fmt.Sprintf("the queue refused changes for %s", w.opt.tune.commitFallbackAfter)); err != nil {
		return
	}
	w.statMu.Lock()
	w.fullSyncOwed = ""
	w.statMu.Unlock()
	w.mu.Lock()
	for p, c := range w.pending {
		if c.last < w.since(before) {
			w.forgetTreeLocked(p, c)
			delete(w.pending, p)
		}
	}
	w.mu.Unlock()
	w.opt.Log.Warnf("the queue refused %d changes for %s: a full push of the tree is queued instead", held, w.opt.tune.commitFallbackAfter)
}

// flushReady hands on what has settled and returns how long until the next
// recorded path may have (0: nothing pending). What it returns is also
// noted in flushAt, under the same lock as it was worked out, so that
// record wakes the flush goroutine only when it would not look in time.
func (w *Watcher) flushReady() (time.Duration, error) {
	now := time.Now()
	// Commits are spaced at least Settle/4 apart, and busyCommitGap×Settle
	// apart in a stream (changes keep coming), so a steady stream of
	// quickly settling files is committed (and fsynced) in batches, while
	// a lone change or the end of a short burst is never held back.
	minGap := w.opt.Settle / 4
	if w.commits.On() {
		minGap = w.opt.tune.busyCommitGap * w.opt.Settle
	}
	if gap := minGap - now.Sub(w.commits.Last()); gap > 0 {
		w.mu.Lock()
		defer w.mu.Unlock()
		next := time.Duration(0)
		switch {
		case len(w.pending) > 0:
			next = gap
		case len(w.recent) > 0:
			next = w.opt.tune.recentFor
		}
		return w.flushIn(now, next), nil
	}
	// Events not yet read may belong to paths that look quiet only because
	// the reader fell behind (a create and its write split into two
	// pushes): let it catch up first, for a little while.
	if len(w.in.events) > 0 && w.postponed < maxPostpone {
		w.postponed++
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.flushIn(now, time.Millisecond), nil
	}
	w.postponed = 0
	if err := w.flush(now, false); err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Duration
	for _, c := range w.pending {
		d := max(w.due(c).Sub(now), time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	if next == 0 && len(w.recent) > 0 {
		next = w.opt.tune.recentFor // to forget them, and their memory, when idle
	}
	return w.flushIn(now, next), nil
}

// flushIn notes when the flush goroutine looks again by itself; w.mu held.
func (w *Watcher) flushIn(now time.Time, next time.Duration) time.Duration {
	w.flushAt = time.Time{}
	if next > 0 {
		w.flushAt = now.Add(next)
	}
	return next
}

func (w *Watcher) flush(now time.Time, all bool) error {
	if !all {
		w.sizeFiles(now)
	}
	w.mu.Lock()
	var ready []string
	for p, c := range w.pending {
		if all || !now.Before(w.due(c)) {
			ready = append(ready, p)
		}
	}
	if !all {
		ready = w.holdForMovesLocked(ready)
	}
	trees := map[string]bool{} // the tree changes among ready, each with whether it is fresh
	for _, p := range ready {
		// A complete file handed on is done with: a later save of it
		// starts afresh (settle.go); so is a tree (trees.go).
		switch c := w.pending[p]; {
		case c.tree != nil:
			trees[p] = c.tree.fresh
			w.forgetTreeLocked(p, c)
			delete(w.recent, p)
		case c.complete:
			delete(w.recent, p)
		default:
			w.recent[p] = handedOn{at: w.since(now), events: c.events}
		}
		delete(w.pending, p)
	}
	sort.Strings(ready)
	changes := w.changesLocked(ready, now)
	// Go maps keep their size after deletes: after a big burst, drop the
	// emptied tables rather than hold their memory for the daemon's life.
	if len(w.pending) == 0 && len(ready) >= shrinkMapsFrom {
		w.pending = map[string]*held{}
	}
	if now.Sub(w.recentPruned) >= w.opt.tune.recentFor {
		pruned := 0
		for p, h := range w.recent {
			if w.since(now)-h.at >= w.opt.tune.recentFor {
				delete(w.recent, p)
				pruned++
			}
		}
		if pruned >= shrinkMapsFrom && len(w.recent) < pruned/4 {
			kept := make(map[string]handedOn, len(w.recent))
			maps.Copy(kept, w.recent) // not maps.Clone: it keeps the old size
			w.recent = kept
		}
		w.recentPruned = now
	}
	w.mu.Unlock()
	if len(ready) == 0 {
		return nil
	}
	// A tree change is a directory of new content: a batch of its own.
	w.commits.Note(now, len(ready)+len(trees)*(busyPaths-1))
	for i := range changes {
		changes[i].Fresh, changes[i].Tree = trees[changes[i].Path]
	}
	if err := w.opt.Sink.Add(changes); err != nil {
		// Put them back: a change is only forgotten once it is durable.
		w.mu.Lock()
		w.putBackMovesLocked(changes, now)
		for _, p := range ready {
			c := w.pending[p]
			if c == nil {
				c = &held{first: w.since(now), last: w.since(now)}
				w.pending[p] = c
			}
			if _, tree := trees[p]; tree && c.tree == nil {
				// Its scan is done: it only waits for the sink again.
				c.tree = &treeState{}
				if _, t := w.treeAboveLocked(p); t == nil {
					w.trees[p] = c
				}
			}
		}
		w.mu.Unlock()
		return err
	}
	return nil
}
