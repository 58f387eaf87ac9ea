// Package daemon wires the stages together: watch → queue → pusher.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
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
	"github.com/sersyncd/sersyncd/internal/status"
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
		t.Log = log
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
	if d.schedule, err = retry.NewSchedule(c, d.pool, log); err != nil {
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

// Reload applies a new, already validated config without a restart: the
// new watcher is set before the old one stops, so no change goes unseen;
// the new pool starts while the old one's pushes finish. On error the old
// config stays in force.
func (d *Daemon) Reload(c *config.Config) error {
	req := reloadRequest{cfg: c, reply: make(chan error, 1)}
	select {
	case d.reloads <- req:
		return <-req.reply
	case <-d.killed:
		return errors.New("reload: daemon is stopping")
	}
}

func (d *Daemon) reload(c *config.Config) error {
	srcs, targets, names, err := buildSources(c, func(t *rsync.Options) {
		t.OnBytesSent = d.metrics.BytesSent
		t.Log = d.log
		t.OnProgress = d.progress.update
		t.Standby = c.Daemon.Standby
	})
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	// Trees may come and go (a new one is watched before the old watchers
	// stop; a removed one's targets keep their records, as any removed
	// target's), but a target stays with its tree.
	if moved := movedTarget(d.sources, srcs); moved != "" {
		return fmt.Errorf("reload: %s: the paths queued for it are relative to the tree it had; give the target another name, or restart sersyncd once its queue is empty", moved)
	}
	if err := plugin.Check(c); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if c.FailLog.Path != "" {
		if err := retry.CheckFailLog(c.FailLog.Path); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	for _, w := range c.Warnings {
		d.log.Warn(w)
	}
	if err := d.queue.SetTargets(names); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	ws, err := d.newWatchers(c, srcs)
	if err != nil {
		_ = d.queue.SetTargets(d.queue.Targets())
		return fmt.Errorf("reload: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The old pool stops claiming first: a full push queued for the new
	// filter must not be taken by a target built with the old one.
	d.poolStop()
	old, oldSrcs := d.watchers, d.sources
	d.watchers, d.sources = ws, srcs
	ws.start()
	if _, err := old.Stop(); err != nil {
		d.log.WithError(err).Warn("reload: old watcher")
	}
	d.metrics.SetTargetSources(targetSources(srcs))
	for _, s := range srcs {
		why := ""
		switch {
		case isNew(s, oldSrcs):
			// Nothing of it was watched before: all of it may be new to
			// its targets.
			why = "it is new to the config"
		case filterChanged(s, oldSrcs):
			// Paths the old filter excluded may now be wanted.
			why = "its filter changed"
		}
		if why == "" {
			continue
		}
		if err := d.queue.AddTargets(s.names, []string{queue.FullSync}); err != nil {
			d.log.WithError(err).Errorf("reload: queue a full push of %s (%s)", s.cfg.Path, why)
		} else {
			d.log.Infof("reload: pushing %s whole to its targets: %s", s.cfg.Path, why)
		}
	}
	for _, name := range d.pool.Names() {
		if !slices.Contains(names, name) {
			if n := d.queue.Pending(name); n > 0 {
				d.log.WithField("target", name).Warnf("target removed from the config; its %d pending changes stay in the queue", n)
			}
		}
	}
	// The old pool closes the old plugin when its pushes are done.
	if d.plugin, err = plugin.New(c, d.log); err != nil {
		d.log.WithError(err).Error("reload: plugin") // cannot happen: Check passed
	}
	d.pool = d.newPool(c, targets)
	d.startPool(d.pool, d.plugin)
	d.cronDone = append(d.cronDone, d.schedule.Stop())
	if sched, err := retry.NewSchedule(c, d.pool, d.log); err != nil {
		d.log.WithError(err).Error("reload: schedule")
	} else {
		d.schedule = sched
		sched.Start()
	}
	if d.verifier != nil {
		d.cronDone = append(d.cronDone, d.verifier.Stop())
	}
	if d.verifier, err = d.newVerifySchedule(c); err != nil {
		d.log.WithError(err).Error("reload: verify schedule")
	} else if d.verifier != nil {
		d.verifier.Start()
	}
	d.cfg = c
	d.log.WithFields(logrus.Fields{"targets": len(names), "config": c.File}).Info("config reloaded")
	return nil
}

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

// Status reports the queue and the targets' health.
func (d *Daemon) Status() (*control.Status, error) {
	d.mu.Lock()
	pool, w, srcs := d.pool, d.watchers, d.sources
	d.mu.Unlock()
	st, err := statusOf(d.queue, pool, srcs, d.opt.DBPath, d.verifyStatus)
	if err != nil {
		return nil, err
	}
	st.Running = true
	st.PID = os.Getpid()
	st.WatchedDirs = w.Dirs()
	st.Overflows = w.Overflows()
	st.Degraded = w.Degraded()
	for i := range st.Sources {
		st.Sources[i].WatchedDirs = w.ws[i].Dirs()
		if deg := w.ws[i].Degraded(); deg != nil {
			st.Sources[i].Degraded = deg.Error()
		}
	}
	return st, nil
}

// Replay pushes the failure records now (`sersyncd retry`).
func (d *Daemon) Replay(ctx context.Context, target string) ([]pusher.ReplayResult, error) {
	d.mu.Lock()
	pool := d.pool
	d.mu.Unlock()
	return pool.Replay(ctx, target)
}

var _ control.Handler = (*Daemon)(nil)

// Snapshot gives the metrics their gauges.
func (d *Daemon) Snapshot() metrics.Snapshot {
	d.mu.Lock()
	pool, w, srcs := d.pool, d.watchers, d.sources
	d.mu.Unlock()
	s := metrics.Snapshot{WatchedDirs: w.Dirs(), Overflows: w.Overflows(), Degraded: w.Degraded()}
	// A scrape counts no records: the pending count is kept, the oldest
	// change one cursor step away.
	s.Targets, _ = targets(d.queue, pool, srcs, false, d.verifyStatus)
	return s
}

var _ metrics.Source = (*Daemon)(nil)

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

// statusOf is `status`: the queue, the trees and every target in full.
// verify, when set, gives a target's last scheduled verify.
func statusOf(q *queue.Queue, pool *pusher.Pool, srcs []*source, db string, verify func(string) *status.Verify) (*control.Status, error) {
	missed, err := q.MissedNow()
	if err != nil {
		return nil, err
	}
	st := &control.Status{Queue: db, Missed: missed}
	for _, s := range srcs {
		st.Sources = append(st.Sources, control.SourceStatus{Path: s.cfg.Path, Targets: s.names})
	}
	st.Targets, err = targets(q, pool, srcs, true, verify)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// targets is the snapshot of every target that `status` and the metrics
// read: the pool's health, the tree it is pushed from, the queue's counts
// and the last verify. full counts the failed records too (a walk of the
// target's records, as `status` does); without it (a metrics scrape) the
// pending count is the kept one and a target's first error is the pool's
// only. A target whose oldest change cannot be read is reported without it.
func targets(q *queue.Queue, pool *pusher.Pool, srcs []*source, full bool, verify func(string) *status.Verify) ([]status.Target, error) {
	sourceOf := targetSources(srcs)
	now := time.Now()
	ts := pool.Status()
	for i := range ts {
		t := &ts[i]
		t.Source = sourceOf[t.Name]
		if full {
			qs, err := q.Stats(t.Name)
			if err != nil {
				return nil, err
			}
			t.Pending, t.Failed, t.OldestPending = qs.Pending, qs.Failed, qs.OldestQueued
		} else {
			t.Pending = q.Pending(t.Name)
			if oldest, err := q.OldestQueued(t.Name); err == nil {
				t.OldestPending = oldest
			}
		}
		if !t.OldestPending.IsZero() {
			t.LagSeconds = now.Sub(t.OldestPending).Seconds()
		}
		if t.LastError == "" && t.Failed > 0 {
			// Offline, or nothing tried since the start: the queue still
			// says why they failed.
			t.LastError, _ = q.LastFailure(t.Name)
		}
		if verify != nil {
			t.Verify = verify(t.Name)
		}
	}
	return ts, nil
}

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
func (t *Tool) Replay(ctx context.Context, target string) ([]pusher.ReplayResult, error) {
	return t.pool.Replay(ctx, target)
}

// Close closes the queue.
func (t *Tool) Close() error { return t.queue.Close() }

var _ control.Handler = (*Tool)(nil)
