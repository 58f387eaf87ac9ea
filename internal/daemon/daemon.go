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
	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/metrics"
	"github.com/sersyncd/sersyncd/internal/plugin"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/rsync"
	"github.com/sersyncd/sersyncd/internal/verify"
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
	// MetricsAddr, when set, serves /metrics and /healthz there.
	MetricsAddr string
	// Terminal says the log goes to a terminal: -r then shows progress bars.
	Terminal bool
	Log      *logrus.Logger
	// Heartbeat, when set, is told when the watcher's and the pushers'
	// loops work and wait (systemd's watchdog).
	Heartbeat *heartbeat.Registry
}

// Daemon is a running sersyncd.
type Daemon struct {
	opt      Options
	log      *logrus.Logger
	queue    *queue.Queue
	control  *control.Server
	metrics  *metrics.Metrics
	progress *progress
	httpSrv  *metrics.Server
	hard     context.Context // pushes run under it; cancelled to kill them
	kill     context.CancelFunc

	mu       sync.Mutex // guards what a reload replaces
	cfg      *config.Config
	sources  []*source
	watchers *watchSet
	pool     *pusher.Pool
	failLog  *retry.FailLog
	schedule *retry.Schedule
	verifier *verify.Schedule // nil when no verify is scheduled
	plugin   plugin.Plugin    // nil when no plugin is enabled; closed when its pool stops

	poolStop context.CancelFunc
	pools    sync.WaitGroup // every pool started, replaced ones included
	cronDone []context.Context
	failLogs []*retry.FailLog

	verified *verify.Store // the last scheduled verify of each target, across reloads

	reloads  chan reloadRequest
	killOnce sync.Once
	killed   chan struct{}
}

type reloadRequest struct {
	cfg   *config.Config
	reply chan error
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
	if c.FailLog.Path != "" {
		if err := retry.CheckFailLog(c.FailLog.Path); err != nil {
			return nil, err
		}
	}
	m := metrics.New(nil)
	var prog *progress
	hooks := func(t *rsync.Options) {
		t.OnBytesSent = m.BytesSent
		t.OnProgress = func(target string, p rsync.Progress) { prog.update(target, p) }
		t.Standby = c.Daemon.Standby
	}
	srcs, targets, names, err := buildSources(c, hooks)
	if err != nil {
		return nil, err
	}
	prog = newProgress(log, log.Out, opt.Terminal && opt.FullPushAtStart, names)
	q, err := openQueue(opt.DBPath, names, log)
	if err != nil {
		return nil, err
	}
	if why := q.Missed(); why != "" {
		if len(srcs) > 1 {
			// The mark may be one tree's: its targets alone owe the push.
			log.Warnf("changes may have been missed: %s; pushing the whole tree to every target that owes it", why)
		} else {
			log.Warnf("changes may have been missed: %s; pushing the whole tree to every target", why)
		}
	}
	for _, name := range names {
		if n := q.Pending(name); n > 0 {
			log.WithField("target", name).Infof("%d changes left from the last run are pushed first", n)
		}
	}
	hard, kill := context.WithCancel(context.Background())
	d := &Daemon{opt: opt, log: log, queue: q, metrics: m, progress: prog, hard: hard, kill: kill, cfg: c,
		sources: srcs, verified: verify.NewStore(), reloads: make(chan reloadRequest), killed: make(chan struct{})}
	m.SetSource(d)
	m.SetTargetSources(targetSources(srcs))
	if d.watchers, err = d.newWatchers(c, srcs); err != nil {
		q.Close()
		return nil, err
	}
	// Queued only now that every watch is set, so nothing changed during
	// the full push is missed. (One owed for missed changes was queued with
	// its mark; no push runs before Run.)
	if opt.FullPushAtStart {
		if err := q.AddFullSync(); err != nil {
			q.Close()
			return nil, err
		}
	}
	if d.plugin, err = plugin.New(c, log); err != nil {
		d.closeFiles()
		return nil, err
	}
	d.pool = d.newPool(c, targets)
	if d.schedule, err = d.newSchedule(c); err != nil {
		d.closeFiles()
		return nil, err
	}
	if d.verifier, err = d.newVerifySchedule(c); err != nil {
		d.closeFiles()
		return nil, err
	}
	// The queue's lock is held: no other daemon can own this socket.
	if d.control, err = control.Listen(control.SocketPath(opt.DBPath), d, log); err != nil {
		d.closeFiles()
		return nil, err
	}
	if opt.MetricsAddr != "" {
		if d.httpSrv, err = m.Serve(opt.MetricsAddr, c.Daemon.HealthLag); err != nil {
			d.closeFiles()
			return nil, err
		}
		log.Infof("metrics at http://%s/metrics, health at /healthz", opt.MetricsAddr)
	}
	return d, nil
}

// newWatchers sets the watches of every tree, each feeding its own
// targets; on error none is left.
func (d *Daemon) newWatchers(c *config.Config, srcs []*source) (*watchSet, error) {
	var degradedEvery time.Duration // the watcher's default unless crontab sets one
	if c.Crontab.Enabled {
		degradedEvery = c.Crontab.Interval
	}
	set := &watchSet{srcs: srcs}
	for _, s := range srcs {
		sink := sourceSink{q: d.queue, m: d.metrics, srcs: srcs, src: s}
		w, err := watch.New(watch.Options{
			Root:                  s.cfg.Path,
			Filter:                s.flt,
			Events:                c.Events,
			Settle:                c.Daemon.Settle,
			MaxHold:               c.Daemon.MaxHold,
			DegradedFullSyncEvery: degradedEvery,
			OnEvent:               d.metrics.Event,
			Sink:                  sink,
			Parked:                func(rel string) bool { return d.queue.ParkedFor(s.names, rel) },
			Log:                   d.log,
			Heartbeat:             d.opt.Heartbeat,
		})
		if err != nil {
			set.discard()
			return nil, err
		}
		d.log.WithField("dirs", w.Dirs()).Infof("watching %s", s.cfg.Path)
		set.ws = append(set.ws, w)
	}
	return set, nil
}

// newPool makes the pool for c, with a failLog observer; the failLog of
// the same path is shared with the pool it replaces.
func (d *Daemon) newPool(c *config.Config, targets []pusher.Target) *pusher.Pool {
	obs := pusher.Observers{d.metrics, d.progress}
	if c.FailLog.Path != "" {
		if d.failLog == nil || d.cfg.FailLog.Path != c.FailLog.Path {
			d.failLog = retry.OpenFailLog(c.FailLog.Path, d.log)
			d.failLogs = append(d.failLogs, d.failLog)
		}
		obs = append(obs, d.failLog)
	}
	if d.plugin != nil {
		if d.failLog != nil {
			d.plugin.ReportFailuresTo(d.failLog)
		}
		obs = append(obs, d.plugin)
	}
	return newPool(c, d.queue, targets, d.opt.Workers, obs, d.log, d.opt.Heartbeat)
}

// newSchedule makes the timed jobs of c: the replay of the current pool's
// failures, its crontab full push.
func (d *Daemon) newSchedule(c *config.Config) (*retry.Schedule, error) {
	return retry.NewSchedule(c, retry.NewReplayer(d.queue, d.pool), d.pool, d.log)
}

func (d *Daemon) startPool(p *pusher.Pool, plug plugin.Plugin) {
	ctx, stop := context.WithCancel(context.Background())
	d.pools.Add(1)
	go func() {
		defer d.pools.Done()
		p.Run(ctx, d.hard)
		// Run returns once its pushes are done: nothing calls the
		// pool's plugin any more.
		if plug != nil {
			plug.Close()
		}
	}()
	d.poolStop = stop
}

func (d *Daemon) closeFiles() {
	if d.plugin != nil {
		d.plugin.Close()
	}
	if d.httpSrv != nil {
		d.httpSrv.Close()
	}
	if d.control != nil {
		d.control.Close()
	}
	for _, f := range d.failLogs {
		f.Close()
	}
	d.queue.Close()
}

// Kill makes a graceful stop in progress end at once; running pushes are
// killed and their records stay queued.
func (d *Daemon) Kill() { d.killOnce.Do(func() { close(d.killed) }) }

// Run replicates until ctx ends, then stops gracefully: the watcher commits
// what it has seen, running pushes get DrainTimeout to finish, the queue is
// closed cleanly.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.kill()
	d.mu.Lock()
	d.watchers.start()
	d.startPool(d.pool, d.plugin)
	d.schedule.Start()
	if d.verifier != nil {
		d.verifier.Start()
	}
	d.mu.Unlock()

loop:
	for {
		d.mu.Lock()
		watchEnded := d.watchers.ended
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			break loop
		case <-d.killed:
			break loop
		case req := <-d.reloads:
			req.reply <- d.reload(req.cfg)
		case <-watchEnded:
			break loop
		}
	}
	d.log.Info("stopping: committing seen changes, letting running pushes finish")
	d.mu.Lock()
	defer d.mu.Unlock()
	gone, runErr := d.watchers.Stop()
	d.cronDone = append(d.cronDone, d.schedule.Stop())
	if d.verifier != nil {
		d.cronDone = append(d.cronDone, d.verifier.Stop())
	}
	d.poolStop()
	allDone := make(chan struct{})
	go func() {
		d.pools.Wait()
		for _, c := range d.cronDone {
			<-c.Done()
		}
		close(allDone)
	}()
	select {
	case <-allDone:
	case <-d.killed:
		d.kill()
		<-allDone
	case <-time.After(d.opt.DrainTimeout):
		d.log.Warnf("pushes still running after %s; killing them, their changes stay queued", d.opt.DrainTimeout)
		d.kill()
		<-allDone
	}
	d.progress.close()
	if errors.Is(runErr, watch.ErrRootGone) {
		// Whatever is put in its place is unknown to the queue: the next
		// start pushes all of it (the pushes have stopped, so none runs
		// now against the missing root).
		if err := d.queue.MarkMissedTargets(missedIn(d.sources, gone, "the watched directory was removed or renamed"), gone.names); err != nil {
			runErr = fmt.Errorf("%w; restore it and start sersyncd again with -r (recording that a full push is owed failed: %v)", runErr, err)
		} else {
			runErr = fmt.Errorf("%w; restore it and start sersyncd again: a full push will run at start", runErr)
		}
	}
	if d.httpSrv != nil {
		d.httpSrv.Close()
	}
	d.control.Close()
	for _, f := range d.failLogs {
		f.Close()
	}
	if err := d.queue.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("close queue: %w", err)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	return nil
}

// Replay pushes the failure records now (`sersyncd retry`).
func (d *Daemon) Replay(ctx context.Context, target string) ([]retry.Result, error) {
	d.mu.Lock()
	pool := d.pool
	d.mu.Unlock()
	return retry.NewReplayer(d.queue, pool).Replay(ctx, target)
}

var _ control.Handler = (*Daemon)(nil)

func newPool(c *config.Config, q *queue.Queue, targets []pusher.Target, workers int, obs pusher.Observers, log logrus.FieldLogger, hb *heartbeat.Registry) *pusher.Pool {
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
		Heartbeat:  hb,
	})
}
