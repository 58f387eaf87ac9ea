package heartbeat

import (
	"context"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Ping calls ping at once and then every `every` until ctx ends, but only
// while no loop has been busy with one piece of work for bound or longer:
// a stuck loop stops the pings, and systemd's watchdog restarts the daemon.
// When it starts withholding pings and when they resume it logs, and tells
// status (systemd's STATUS=, what `systemctl status` shows) why.
func (r *Registry) Ping(ctx context.Context, every, bound time.Duration, ping func() error, status func(string), log logrus.FieldLogger) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	withheld, pingFailed := false, false
	for {
		stuck := r.Stuck(time.Now(), bound)
		switch {
		case len(stuck) > 0:
			if !withheld {
				withheld = true
				why := "stuck: " + strings.Join(stuck, ", ")
				log.Errorf("%s; withholding the watchdog ping, so systemd restarts sersyncd", why)
				status(why)
			}
		default:
			if withheld {
				withheld = false
				log.Warn("no loop is stuck any more; watchdog pings resume")
				status("running")
			}
			// One failure logged, not one per tick: the socket is gone
			// or refuses us, and will likely stay so.
			err := ping()
			if err != nil && !pingFailed {
				log.WithError(err).Warn("watchdog ping")
			}
			pingFailed = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
