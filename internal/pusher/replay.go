package pusher

// Replay: push every record of a target now (failed, parked or held back by
// a backoff), for `sersyncd retry` and the control socket, and report what
// still fails.

import (
	"context"
	"sync"
	"time"

	"github.com/sersyncd/sersyncd/internal/queue"
)

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
