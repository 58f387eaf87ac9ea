// Package retry keeps sersync's promise of timed retransmission without its
// danger: sersync writes failed pushes into a shell script and executes it,
// so a file name with shell characters runs as a command. sersyncd keeps the
// failures as records in the queue, replays them on a cron schedule (and on
// `sersyncd retry`), and writes the failLog for people only, never to run.
package retry

// The replay: every record of a target pushed now (failed, parked or held
// back by a backoff), through the pusher's pool, for `sersyncd retry`, the
// control socket and the timed job; and what still fails.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
)

// Result says how a replay of one target's failures went.
type Result struct {
	Target       string `json:"target"`
	Replayed     int    `json:"replayed"`
	StillFailing int    `json:"still_failing"`
	Reason       string `json:"reason,omitempty"`
}

// Queue is what a replay needs of the queue.
type Queue interface {
	ClaimForReplay(target string, max int, began time.Time) ([]queue.Item, error)
	Failing(target string) (failed, held int, err error)
}

var _ Queue = (*queue.Queue)(nil)

// Pool is what a replay needs of the pusher's pool: its targets and batch
// size, a push of the records the replay claimed done as the pool's own
// pushes are, a context that dies with the pool's pushes, and the end of
// the backoffs.
type Pool interface {
	Names() []string
	BatchMax() int
	PushClaimed(ctx context.Context, target string, items []queue.Item) (failed int, err error)
	Killable(ctx context.Context) (context.Context, context.CancelFunc)
	RetryNow()
}

var _ Pool = (*pusher.Pool)(nil)

// Replayer replays the failures of a pool's targets.
type Replayer struct {
	q    Queue
	pool Pool
}

// NewReplayer returns the replayer of pool's targets, whose records q
// holds.
func NewReplayer(q Queue, pool Pool) *Replayer {
	return &Replayer{q: q, pool: pool}
}

// Replay pushes every record of the named target (all targets when name is
// empty) now, failed or held back by a backoff, one batched push per target
// and batch, and ends the backoffs.
func (r *Replayer) Replay(ctx context.Context, name string) ([]Result, error) {
	names := r.pool.Names()
	if name != "" {
		if !slices.Contains(names, name) {
			return nil, fmt.Errorf("unknown target %q", name)
		}
		names = []string{name}
	}
	ctx, cancel := r.pool.Killable(ctx)
	defer cancel()
	results := make([]Result, len(names))
	var wg sync.WaitGroup
	for i, target := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.replay(ctx, target)
		}()
	}
	wg.Wait()
	r.pool.RetryNow()
	return results, nil
}

func (r *Replayer) replay(ctx context.Context, name string) Result {
	res := Result{Target: name}
	start := time.Now()
	for ctx.Err() == nil {
		items, err := r.q.ClaimForReplay(name, r.pool.BatchMax(), start)
		if err != nil {
			res.Reason = err.Error()
			break
		}
		if len(items) == 0 {
			break
		}
		res.Replayed += len(items)
		failed, err := r.pool.PushClaimed(ctx, name, items)
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
		failed, held, err := r.q.Failing(name)
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
const replayHeldPoll = 50 * time.Millisecond
