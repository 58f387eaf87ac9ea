package daemon

// Reload: a new config applied without a restart. The new watchers are set
// before the old ones stop, the new pool starts while the old one's pushes
// finish, and trees new or refiltered are pushed whole.

import (
	"errors"
	"fmt"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/plugin"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/rsync"
)

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
	if sched, err := d.newSchedule(c); err != nil {
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
