package main

import (
	"context"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/heartbeat"
)

// notifier speaks systemd's notify protocol (Type=notify in
// scripts/sersyncd.service). Without NOTIFY_SOCKET, outside systemd, every
// call does nothing.
type notifier struct{ log logrus.FieldLogger }

func (n notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.WithError(err).Warnf("tell systemd %s", strings.SplitN(state, "\n", 2)[0])
	}
}

// ready: every watch is set, so a change made from now on is seen.
func (n notifier) ready(status string) { n.send(sd.SdNotifyReady + "\nSTATUS=" + status) }

// reloading carries CLOCK_MONOTONIC: systemd 253 and later ignore a
// RELOADING=1 without it.
func (n notifier) reloading() {
	n.send(sd.SdNotifyReloading + "\n" + strings.TrimSuffix(sd.SdNotifyMonotonicUsec(), "\n") + "\nSTATUS=reloading the config")
}

func (n notifier) stopping() {
	n.send(sd.SdNotifyStopping + "\nSTATUS=stopping: committing seen changes, letting running pushes finish")
}

// startWatchdog pings systemd's watchdog while no loop of hb is stuck,
// when the unit sets WatchdogSec (WATCHDOG_USEC), until ctx ends. Pings go
// every quarter of WatchdogSec (systemd asks for at least every half); a
// loop busy with one piece of work for half of it counts as stuck, so
// systemd restarts a daemon within 1.75 × WatchdogSec of a loop hanging.
func startWatchdog(ctx context.Context, hb *heartbeat.Registry, log logrus.FieldLogger) {
	every, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.WithError(err).Warn("systemd watchdog: ignoring WATCHDOG_USEC")
		return
	}
	if every <= 0 {
		return
	}
	log.Infof("systemd watchdog: pinging every %s while no loop is busy for %s", every/4, every/2)
	n := notifier{log}
	go hb.Ping(ctx, every/4, every/2, func() error {
		_, err := sd.SdNotify(false, sd.SdNotifyWatchdog)
		return err
	}, func(status string) { n.send("STATUS=" + status) }, log)
}
