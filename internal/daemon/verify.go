package daemon

import (
	"fmt"

	"github.com/sersyncd/sersyncd/internal/rsync"
	"github.com/sersyncd/sersyncd/internal/status"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/verify"
)

// Enqueue queues paths as changes of one target (`sersyncd verify
// --repair`): the pushers take them as any other change.
func (d *Daemon) Enqueue(target string, paths []string) (int, error) {
	n, err := enqueue(d.queue, target, paths)
	d.metrics.Queued(n)
	return n, err
}

// Enqueue queues paths as changes of one target; the next daemon pushes
// them.
func (t *Tool) Enqueue(target string, paths []string) (int, error) {
	return enqueue(t.queue, target, paths)
}

func enqueue(q *queue.Queue, target string, paths []string) (int, error) {
	if err := control.CheckPaths(paths); err != nil {
		return 0, err
	}
	if err := q.AddTarget(target, paths); err != nil {
		return 0, err
	}
	return len(paths), nil
}

// newVerifySchedule is the scheduled verify of c, nil when it is off. Its
// targets are its own: no push's standby, progress or byte count is touched.
func (d *Daemon) newVerifySchedule(c *config.Config) (*verify.Schedule, error) {
	if c.Daemon.Verify <= 0 {
		return nil, nil
	}
	var targets []*rsync.Target
	for i := range c.Sources {
		src := &c.Sources[i]
		flt, err := sourceFilter(src)
		if err != nil {
			return nil, err
		}
		targets = append(targets, RsyncTargets(c, src, flt, nil)...)
	}
	o := verify.ScheduleOptions{
		Every:   c.Daemon.Verify,
		Options: verify.Options{Checksum: c.Daemon.VerifyChecksum, LowPriority: true},
		Targets: targets,
		Pending: d.pendingPaths,
		Store:   d.verified,
		Log:     d.log,
	}
	if c.Daemon.VerifyRepair {
		o.Repair = d.Enqueue
	}
	s, err := verify.NewSchedule(o)
	if err != nil {
		return nil, fmt.Errorf("schedule verify every %s: %w", c.Daemon.Verify, err)
	}
	return s, nil
}

// pendingPaths are the target's queued changes: a verify that runs beside
// live pushes finds those not pushed yet, which is not drift.
func (d *Daemon) pendingPaths(target string) (map[string]bool, bool, error) {
	paths := map[string]bool{}
	full := false
	err := d.queue.Records(target, func(p string, _ queue.Record) bool {
		if p == queue.FullSync {
			full = true
			return false
		}
		paths[p] = true
		return true
	})
	return paths, full, err
}

// verifyStatus is the target's last scheduled verify for `status`.
func (d *Daemon) verifyStatus(target string) *status.Verify {
	last, ok := d.verified.Get(target)
	if !ok {
		return nil
	}
	r := last.Result
	return &status.Verify{
		Time: r.Started, Checksum: r.Checksum, Drift: last.Drift, Missing: r.Missing, Differing: r.Differing,
		Extra: r.Extra, Kept: r.Kept, Repaired: last.Repaired, Error: r.Error, LastSuccess: last.LastSuccess,
	}
}
