// Package plugin runs sersync's plugins after successful pushes: the
// command plugin (a program run once per pushed path, never through a
// shell) and the socket plugin (each pushed path sent, one per line, to TCP
// listeners). sersync's refreshCDN plugin is not supported.
//
// sersync enables at most one plugin, with <sersync><plugin start="true"
// name="..."/>, and configures it in the top-level <plugin name="...">
// section of the same name. A top-level section alone does nothing.
//
// The plugins act once per pushed path: only on the pushes to the first
// <remote> of <localpath>, so with K targets the command runs once per
// path, not K times, and only once that path reached the first target
// (rsync exited 0 for it). Pushes to the other targets, failed pushes and
// full pushes of the tree are ignored. A path pushed again (changed again,
// or pushed again after a full push overlapped it) is acted on again.
package plugin

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/mattn/go-shellwords"
	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
)

// Plugin is the observer of the enabled plugin; Close stops its background
// work.
type Plugin interface {
	pusher.Observer
	Close() error
	// ReportFailuresTo makes every failed command run that ignoreError does
	// not excuse a failure record: o.Pushed("plugin command", [path], 0, err).
	ReportFailuresTo(o pusher.Observer)
}

// FailureTarget names the command plugin in failure records.
const FailureTarget = "plugin command"

// closeTimeout bounds how long Close drains what is still queued.
const defaultCloseTimeout = 2 * time.Second

// tuning holds the plugins' knobs, each default declared once beside its
// reason. Like syncthing's watchaggregator's caps they are not meant to
// be changed, but must be changeable for tests, through newPlugins rather
// than a global. A zero field takes its default.
type tuning struct {
	closeTimeout       time.Duration
	commandWorkers     int
	commandTimeout     time.Duration
	socketBackoffMin   time.Duration
	socketBackoffMax   time.Duration
	socketQueueMax     int
	socketDialTimeout  time.Duration
	socketWriteTimeout time.Duration
}

// withDefaults fills the zero fields of t.
func (t tuning) withDefaults() tuning {
	t.closeTimeout = cmp.Or(t.closeTimeout, defaultCloseTimeout)
	t.commandWorkers = cmp.Or(t.commandWorkers, defaultCommandWorkers)
	t.commandTimeout = cmp.Or(t.commandTimeout, defaultCommandTimeout)
	t.socketBackoffMin = cmp.Or(t.socketBackoffMin, defaultSocketBackoffMin)
	t.socketBackoffMax = cmp.Or(t.socketBackoffMax, defaultSocketBackoffMax)
	t.socketQueueMax = cmp.Or(t.socketQueueMax, defaultSocketQueueMax)
	t.socketDialTimeout = cmp.Or(t.socketDialTimeout, defaultSocketDialTimeout)
	t.socketWriteTimeout = cmp.Or(t.socketWriteTimeout, defaultSocketWriteTimeout)
	return t
}

// RefreshCDNWarning is logged by New when refreshCDN is enabled.
const RefreshCDNWarning = "refreshCDN is not supported; call your CDN's API from the command plugin instead"

// ReportFailuresTo implements Plugin; call it before the first push.
func (p *Plugins) ReportFailuresTo(o pusher.Observer) {
	if p.cmd != nil && o != nil {
		p.cmd.onFailure = func(rel string, err error) { o.Pushed(FailureTarget, []string{rel}, 0, err) }
	}
}

// Plugins is the Plugin New returns.
type Plugins struct {
	target string // the first target's name: the only one acted on
	log    logrus.FieldLogger
	cmd    *commandRunner
	sock   *socketSender
	tune   tuning

	closeOnce sync.Once
}

var _ Plugin = (*Plugins)(nil)

// New returns the observer for the plugin cfg enables (<sersync><plugin
// start="true" name="command|socket"/>), or nil when none is. It starts no
// process and opens no connection until the first push. The error is for a
// section that cannot work (an empty or unsplittable command, a socket
// plugin without <deshost>).
func New(cfg *config.Config, log logrus.FieldLogger) (Plugin, error) {
	return newPlugins(cfg, log, tuning{})
}

// newPlugins is New with knobs other than the defaults.
func newPlugins(cfg *config.Config, log logrus.FieldLogger, tune tuning) (Plugin, error) {
	tune = tune.withDefaults()
	if err := Check(cfg); err != nil {
		return nil, err
	}
	if !cfg.Plugin.Enabled || len(cfg.Remotes) == 0 {
		return nil, nil
	}
	p := &Plugins{target: cfg.Destination(cfg.Remotes[0]), log: log.WithField("plugin", cfg.Plugin.Name), tune: tune}
	switch cfg.Plugin.Name {
	case "refreshCDN":
		log.Warn(RefreshCDNWarning)
		return nil, nil
	case "command":
		if cfg.Command == nil {
			return nil, nil // the config already warned: no top-level section
		}
		c, err := newCommandRunner(cfg, p.log, tune)
		if err != nil {
			return nil, err
		}
		p.cmd = c
	case "socket":
		if cfg.Socket == nil {
			return nil, nil
		}
		p.sock = newSocketSender(cfg, p.log, tune)
	default:
		return nil, nil
	}
	p.log.WithField("target", p.target).Infof("plugin %s runs after each successful push to the first target", cfg.Plugin.Name)
	return p, nil
}

// Check reports what would make New fail, without starting anything, so
// `sersyncd check` and a reload can refuse such a config.
func Check(cfg *config.Config) error {
	if !cfg.Plugin.Enabled {
		return nil
	}
	switch cfg.Plugin.Name {
	case "command":
		if cfg.Command == nil {
			return nil
		}
		_, _, err := commandWords(cfg.Command)
		return err
	case "socket":
		if cfg.Socket == nil {
			return nil
		}
		if len(cfg.Socket.Hosts) == 0 {
			return errors.New(`<plugin name="socket">: no <localpath><deshost ip=... port=...> to send to`)
		}
		for _, h := range cfg.Socket.Hosts {
			if h.IP == "" {
				return errors.New(`<plugin name="socket">: <deshost ip> is empty`)
			}
		}
	}
	return nil
}

// Pushed implements pusher.Observer. It never blocks on the plugin's work:
// the paths are queued in memory and handled by background goroutines.
func (p *Plugins) Pushed(target string, paths []string, _ time.Duration, err error) {
	if err != nil || target != p.target {
		return
	}
	rel := make([]string, 0, len(paths))
	for _, x := range paths {
		if x == queue.FullSync || x == "" {
			continue // a full push names no path
		}
		rel = append(rel, x)
	}
	if len(rel) == 0 {
		return
	}
	if p.cmd != nil {
		p.cmd.enqueue(rel)
	}
	if p.sock != nil {
		p.sock.enqueue(rel)
	}
}

// Failures returns how many command runs failed (ignoreError="false" only).
func (p *Plugins) Failures() int {
	if p.cmd == nil {
		return 0
	}
	return int(p.cmd.failures.Load())
}

// Close lets queued work finish for at most closeTimeout, then stops it:
// running commands are killed, unsent lines are dropped (and counted in
// the log). Pushed after Close does nothing.
func (p *Plugins) Close() error {
	p.closeOnce.Do(func() {
		deadline := time.Now().Add(p.tune.closeTimeout)
		var wg sync.WaitGroup
		if p.cmd != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.cmd.close(deadline) }()
		}
		if p.sock != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.sock.close(deadline) }()
		}
		wg.Wait()
	})
	return nil
}

// splitWords splits like the config's commonParams: quotes and backslashes
// as in a shell, no variables, no backticks, no operators.
func splitWords(s string) ([]string, error) {
	sp := shellwords.NewParser()
	sp.ParseEnv = false
	sp.ParseBacktick = false
	words, err := sp.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("cannot be split into words (unbalanced quotes?)")
	}
	if sp.Position >= 0 {
		return nil, fmt.Errorf("contains a shell operator (; & | < >) outside quotes; sersyncd runs no shell: write sh -c '...' to use one")
	}
	return words, nil
}

// absPath is rel below root, as sersync named it.
func absPath(root, rel string) string {
	if root == "" || root == "/" {
		return "/" + rel
	}
	return filepath.Clean(root) + "/" + rel
}
