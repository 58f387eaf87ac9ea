package daemon

// Snapshots: the one per-target snapshot (status.Target) and the whole
// status, built once for `status`, the control socket and the metrics.

import (
	"os"
	"time"

	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/metrics"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/status"
)

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

var _ metrics.Source = (*Daemon)(nil)
