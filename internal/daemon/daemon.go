// Package daemon wires the stages together: watch → queue → pusher.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
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
	opt     Options
	log     *logrus.Logger
	queue   *queue.Queue
	watcher *watch.Watcher
	pool    *pusher.Pool

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
	var flt *filter.Filter
	if c.Filter.Enabled {
		var err error
		if flt, err = filter.New(c.Filter.Excludes); err != nil {
			return nil, fmt.Errorf("build filter: %w", err)
		}
	}
	rsyncTargets := pusher.NewRsyncTargets(c, flt)
	targets := make([]pusher.Target, len(rsyncTargets))
	names := make([]string, len(rsyncTargets))
	for i, t := range rsyncTargets {
		targets[i], names[i] = t, t.Name()
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
	pool := pusher.New(q, targets, pusher.Options{
		Workers:    opt.Workers,
		BatchMax:   c.Daemon.BatchMax,
		BackoffMax: c.Daemon.BackoffMax,
		Log:        log,
	})
	return &Daemon{opt: opt, log: log, queue: q, watcher: w, pool: pool, killed: make(chan struct{})}, nil
}

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
	stopPush()
	select {
	case <-poolDone:
	case <-d.killed:
		kill()
		<-poolDone
	case <-time.After(d.opt.DrainTimeout):
		d.log.Warnf("pushes still running after %s; killing them, their changes stay queued", d.opt.DrainTimeout)
		kill()
		<-poolDone
	}
	if err := d.queue.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close queue: %w", err)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}
