package daemon

// The offline tool: the queue and the targets opened by `sersyncd retry`
// and `sersyncd status` while no daemon runs.

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/retry"
)

// Tool is the queue and the targets, opened by `sersyncd retry` and
// `sersyncd status` while no daemon runs.
type Tool struct {
	queue   *queue.Queue
	pool    *pusher.Pool
	sources []*source
	db      string
}

// OpenTool opens the queue without taking the daemon's place: the marker
// of an unclean stop stays for the daemon's next start.
func OpenTool(c *config.Config, db string, log logrus.FieldLogger) (*Tool, error) {
	srcs, targets, names, err := buildSources(c, nil)
	if err != nil {
		return nil, err
	}
	q, err := queue.OpenTool(db, names)
	if err != nil {
		return nil, err
	}
	var obs pusher.Observers
	if c.FailLog.Path != "" {
		obs = append(obs, retry.OpenFailLog(c.FailLog.Path, log))
	}
	return &Tool{queue: q, pool: newPool(c, q, targets, 1, obs, log, nil), sources: srcs, db: db}, nil
}

// Status reports the queue's records.
func (t *Tool) Status() (*control.Status, error) {
	return statusOf(t.queue, t.pool, t.sources, t.db, nil)
}

// Replay pushes the failure records now.
func (t *Tool) Replay(ctx context.Context, target string) ([]retry.Result, error) {
	return retry.NewReplayer(t.queue, t.pool).Replay(ctx, target)
}

// Close closes the queue.
func (t *Tool) Close() error { return t.queue.Close() }

var _ control.Handler = (*Tool)(nil)
