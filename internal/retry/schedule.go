package retry

// The schedule: the timed jobs, the replay of failures every failLog interval
// and the crontab full push, on robfig/cron.

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
)

// Replays is what the timed replay runs: a *Replayer.
type Replays interface {
	Replay(ctx context.Context, target string) ([]Result, error)
}

// FullPusher is what the crontab job runs: the pusher's pool.
type FullPusher interface {
	FullPushAll(extraExcludes []string) error
}

// Schedule runs the timed jobs: the replay of failures every failLog
// interval, and the crontab full push when it is on. A run is skipped while
// the previous one of the same job still runs.
type Schedule struct {
	cron *cron.Cron
}

// NewSchedule builds, but does not start, the jobs for cfg.
func NewSchedule(cfg *config.Config, replays Replays, pool FullPusher, log logrus.FieldLogger) (*Schedule, error) {
	// Skip wraps Recover, not the other way round: cron's skip guard is
	// only released when the job returns, so a panic through it would skip
	// every later run of that job for good.
	c := cron.New(cron.WithChain(cron.SkipIfStillRunning(cronLogger{log}), cron.Recover(cronLogger{log})))
	replay := func() {
		results, err := replays.Replay(context.Background(), "")
		if err != nil {
			log.WithError(err).Error("replay failures")
			return
		}
		for _, r := range results {
			if r.Replayed == 0 {
				continue
			}
			l := log.WithFields(logrus.Fields{"target": r.Target, "replayed": r.Replayed, "still_failing": r.StillFailing})
			if r.StillFailing > 0 {
				l.Warnf("timed replay: failures remain: %s", r.Reason)
			} else {
				l.Info("timed replay: all failures pushed")
			}
		}
	}
	if _, err := c.AddFunc(every(cfg.FailLog.Interval), replay); err != nil {
		return nil, fmt.Errorf("schedule failure replay every %s: %w", cfg.FailLog.Interval, err)
	}
	if cfg.Crontab.Enabled {
		var excludes []string
		if cfg.Crontab.FilterEnabled {
			excludes = cfg.Crontab.FilterExcludes
		}
		full := func() {
			log.Info("crontab: full push of the tree to every target")
			if err := pool.FullPushAll(excludes); err != nil {
				log.WithError(err).Warn("crontab full push")
			}
		}
		if _, err := c.AddFunc(every(cfg.Crontab.Interval), full); err != nil {
			return nil, fmt.Errorf("schedule crontab every %s: %w", cfg.Crontab.Interval, err)
		}
	}
	return &Schedule{cron: c}, nil
}

func every(d time.Duration) string { return "@every " + d.String() }

// Start starts the jobs.
func (s *Schedule) Start() { s.cron.Start() }

// Stop stops scheduling; the returned context ends when running jobs have.
func (s *Schedule) Stop() context.Context { return s.cron.Stop() }

// cronLogger adapts logrus to cron's logger.
type cronLogger struct{ log logrus.FieldLogger }

func (l cronLogger) Info(msg string, kv ...any) {
	l.log.WithFields(fields(kv)).Debug("cron: " + msg)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.WithFields(fields(kv)).WithError(err).Error("cron: " + msg)
}

func fields(kv []any) logrus.Fields {
	f := logrus.Fields{}
	for i := 0; i+1 < len(kv); i += 2 {
		f[fmt.Sprint(kv[i])] = kv[i+1]
	}
	return f
}
