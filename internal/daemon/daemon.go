// Package daemon wires the stages together: watch → queue → pusher.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/watch"
)

// Options configures a daemon.
type Options struct {
	Config          *config.Config
	DBPath          string
	Workers         int
	FullPushAtStart bool
	// DrainTimeout bounds how long a graceful stop waits for running pushes.
	DrainTimeout time.Duration
	Log          *logrus.Logger
}

// Daemon is a running sersyncd.
type Daemon struct {
	opt      Options
	log      *logrus.Logger
	queue    *queue.Queue
	watcher  *watch.Watcher
	pool     *pusher.Pool
	failLog  *retry.FailLog
	schedule *retry.Schedule
	control  *control.Server

	killOnce sync.Once
	killed   chan struct{}
}

// Start opens the queue and sets every watch; once it returns, no change
// to the tree goes unseen.
func Start(opt Options) (*Daemon, error) {
	c := opt.Config
	log := opt.Log
	if opt.DrainTimeout <= 0 {
		opt.DrainTimeout = 30 * time.Second
	}
	for _, w := range c.Warnings {
		log.Warn(w)
	}
	flt, targets, names, err := buildTargets(c)
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(opt.DBPath, names)
	if err != nil {
		return nil, err
	}
	fullPush := opt.FullPushAtStart
	if q.Unclean() {
		log.Warn("the last run did not stop cleanly: changes it saw but had not queued may be lost; pushing the whole tree")
		fullPush = true
	}
	for _, name := range names {
		if n := q.Pending(name); n > 0 {
			log.WithField("target", name).Infof("%d changes left from the last run are pushed first", n)
		}
	}
	w, err := watch.New(watch.Options{
		Root:    c.LocalPath,
		Filter:  flt,
		Events:  c.Events,
		Settle:  c.Daemon.Settle,
		MaxHold: c.Daemon.MaxHold,
		Sink:    q,
		Log:     log,
	})
	if err != nil {
		q.Close()
		return nil, err
	}
	log.WithField("dirs", w.Dirs()).Infof("watching %s", c.LocalPath)
	// Queued only now that every watch is set, so nothing changed during
	// the full push is missed.
	if fullPush {
		if err := q.AddFullSync(); err != nil {
			q.Close()
			return nil, err
		}
	}
	d := &Daemon{opt: opt, log: log, queue: q, watcher: w, killed: make(chan struct{})}
	var observers pusher.Observers
	if c.FailLog.Path != "" {
		d.failLog = retry.OpenFailLog(c.FailLog.Path)
		observers = append(observers, d.failLog)
	}
	d.pool = newPool(c, q, targets, opt.Workers, observers, log)
	if d.schedule, err = retry.NewSchedule(c, d.pool, log); err != nil {
		d.closeAll()
		return nil, err
	}
	// The queue's lock is held: no other daemon can own this socket.
	if d.control, err = control.Listen(control.SocketPath(opt.DBPath), d, log); err != nil {
		d.closeAll()
		return nil, err
	}
	return d, nil
}

func buildTargets(c *config.Config) (*filter.Filter, []pusher.Target, []string, error) {
	var flt *filter.Filter
	if c.Filter.Enabled {
		var err error
		if flt, err = filter.New(c.Filter.Excludes); err != nil {
			return nil, nil, nil, fmt.Errorf("build filter: %w", err)
		}
	}
	rsyncTargets := pusher.NewRsyncTargets(c, flt)
	targets := make([]pusher.Target, len(rsyncTargets))
	names := make([]string, len(rsyncTargets))
	for i, t := range rsyncTargets {
		targets[i], names[i] = t, t.Name()
	}
	return flt, targets, names, nil
}

func newPool(c *config.Config, q *queue.Queue, targets []pusher.Target, workers int, obs pusher.Observers, log logrus.FieldLogger) *pusher.Pool {
	var observer pusher.Observer
	if len(obs) > 0 {
		observer = obs
	}
	return pusher.New(q, targets, pusher.Options{
		Workers:    workers,
		BatchMax:   c.Daemon.BatchMax,
		BackoffMax: c.Daemon.BackoffMax,
		Log:        log,
		Observer:   observer,
	})
}

func (d *Daemon) closeAll() {
	if d.control != nil {
		d.control.Close()
	}
	if d.failLog != nil {
		d.failLog.Close()
	}
	d.queue.Close()
}

// Status reports the queue and the targets' health.
func (d *Daemon) Status() (*control.Status, error) {
	st, err := status(d.queue, d.pool, d.opt.DBPath)
	if err != nil {
		return nil, err
	}
	st.Running = true
	st.PID = os.Getpid()
	st.WatchedDirs = d.watcher.Dirs()
	st.Overflows = d.watcher.Overflows()
	return st, nil
}

// Replay pushes the failure records now (`sersyncd retry`).
func (d *Daemon) Replay(ctx context.Context, target string) ([]pusher.ReplayResult, error) {
	return d.pool.Replay(ctx, target)
}

var _ control.Handler = (*Daemon)(nil)

func status(q *queue.Queue, pool *pusher.Pool, db string) (*control.Status, error) {
	st := &control.Status{Queue: db}
	now := time.Now()
	for _, ps := range pool.Status() {
		qs, err := q.Stats(ps.Name)
		if err != nil {
			return nil, err
		}
		ts := control.TargetStatus{
			Name: ps.Name, Pending: qs.Pending, Failed: qs.Failed, OldestPending: qs.OldestQueued,
			LastSuccess: ps.LastSuccess, LastError: ps.LastError,
			ConsecutiveFailures: ps.ConsecutiveFailures, RetryAt: ps.RetryAt,
		}
		if !qs.OldestQueued.IsZero() {
			ts.LagSeconds = now.Sub(qs.OldestQueued).Seconds()
		}
		if ts.LastError == "" && qs.Failed > 0 {
			// Offline, or nothing tried since the start: the records
			// still say why they failed.
			_ = q.Records(ps.Name, func(_ string, rec queue.Record) bool {
				if rec.Failed() {
					ts.LastError = rec.Error
					return false
				}
				return true
			})
		}
		st.Targets = append(st.Targets, ts)
	}
	return st, nil
}

// Tool is the queue and the targets, opened by `sersyncd retry` and
// `sersyncd status` while no daemon runs.
type Tool struct {
	queue *queue.Queue
	pool  *pusher.Pool
	db    string
}

// OpenTool opens the queue without taking the daemon's place: the marker
// of an unclean stop stays for the daemon's next start.
func OpenTool(c *config.Config, db string, log logrus.FieldLogger) (*Tool, error) {
	_, targets, names, err := buildTargets(c)
	if err != nil {
		return nil, err
	}
	q, err := queue.OpenTool(db, names)
	if err != nil {
		return nil, err
	}
	var obs pusher.Observers
	if c.FailLog.Path != "" {
		obs = append(obs, retry.OpenFailLog(c.FailLog.Path))
	}
	return &Tool{queue: q, pool: newPool(c, q, targets, 1, obs, log), db: db}, nil
}

// Status reports the queue's records.
func (t *Tool) Status() (*control.Status, error) { return status(t.queue, t.pool, t.db) }

// Replay pushes the failure records now.
func (t *Tool) Replay(ctx context.Context, target string) ([]pusher.ReplayResult, error) {
	return t.pool.Replay(ctx, target)
}

// Close closes the queue.
func (t *Tool) Close() error { return t.queue.Close() }

var _ control.Handler = (*Tool)(nil)

// Kill makes a graceful stop in progress end at once; running pushes are
// killed and their records stay queued.
func (d *Daemon) Kill() { d.killOnce.Do(func() { close(d.killed) }) }

// Run replicates until ctx ends, then stops gracefully: the watcher commits
// what it has seen, running pushes get DrainTimeout to finish, the queue is
// closed cleanly.
func (d *Daemon) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	pushCtx, stopPush := context.WithCancel(context.Background())
	defer stopPush()
	hard, kill := context.WithCancel(context.Background())
	defer kill()

	watchDone := make(chan error, 1)
	go func() { watchDone <- d.watcher.Run(watchCtx) }()
	poolDone := make(chan struct{})
	go func() { d.pool.Run(pushCtx, hard); close(poolDone) }()
	d.schedule.Start()

	var runErr error
	select {
	case <-ctx.Done():
	case <-d.killed:
	case err := <-watchDone:
		runErr = err
		watchDone <- nil
	}
	d.log.Info("stopping: committing seen changes, letting running pushes finish")
	stopWatch()
	if err := <-watchDone; err != nil && runErr == nil {
		runErr = err
	}
	cronDone := d.schedule.Stop()
	stopPush()
	allDone := make(chan struct{})
	go func() { <-poolDone; <-cronDone.Done(); close(allDone) }()
	select {
	case <-allDone:
	case <-d.killed:
		kill()
		<-allDone
	case <-time.After(d.opt.DrainTimeout):
		d.log.Warnf("pushes still running after %s; killing them, their changes stay queued", d.opt.DrainTimeout)
		kill()
		<-allDone
	}
	d.control.Close()
	if d.failLog != nil {
		d.failLog.Close()
	}
	if err := d.queue.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close queue: %w", err)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}
