package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/daemon"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/plugin"
	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/safefile"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// Exit codes, documented in --help.
const (
	exitOK      = 0 // clean stop
	exitRuntime = 1 // runtime failure
	exitUsage   = 2 // bad config or flags
)

const (
	defaultConfig  = "./confxml.xml"
	defaultDB      = "/var/lib/sersyncd/queue.db"
	defaultLogFile = "/var/log/sersyncd.log"
	defaultPidFile = "/run/sersyncd.pid"
)

const usageText = `sersyncd replicates a directory tree, in real time, to rsync daemons or ssh
targets, reading sersync 2.5's confxml.xml unchanged.

Usage:
  sersyncd [-d] [-r] [-n N] [-o FILE] [--db FILE]   run the daemon
           [--log-target stderr|file|syslog]
  sersyncd check -o FILE [--path P]...             validate the config and print the effective settings,
                                                   or say for each path whether it is pushed or excluded
  sersyncd retry -o FILE [--db FILE] [--target T] [--source LOCALPATH]
                                                   push the failure records now (of one target, or of the
                                                   targets of one tree); exit 1 if some still fail
  sersyncd status -o FILE [--db FILE] [--json]     pending and failed paths, lag, last success and error per target
  sersyncd verify -o FILE [--target T] [--checksum] [--repair] [--db FILE] [--json]
                                                   compare each target with the source (rsync dry run,
                                                   under the push's rules): missing, differing, extra paths;
                                                   --checksum compares contents (slow: reads every file on
                                                   both sides), else size and mtime; --repair queues the
                                                   drifted paths for the daemon to push (never deletes
                                                   where <delete start="false">)
  sersyncd --version | --help

Daemon flags:
%s
Exit codes:
  0  clean stop (SIGTERM or SIGINT: running pushes finish, the rest stays queued);
     retry: nothing still fails; verify: every target equals the source
  1  runtime failure (queue file locked or unwritable, inotify limits, ...);
     retry: some paths still fail; verify: a target differs or could not be checked
  2  bad config or flags

retry, status and verify --repair ask the running daemon over the control
socket beside the queue file (FILE.sock, mode 0600); when none runs they open
the queue file.

Signals: SIGTERM/SIGINT stop gracefully, a second one stops at once (the
queue stays consistent); SIGHUP reloads the config (validated first; an
invalid one is logged and the running config stays).

Example:
  sersyncd -r -n 4 -o /etc/sersyncd/confxml.xml --db /var/lib/sersyncd/queue.db
`

type daemonFlags struct {
	detach    bool
	fullPush  bool
	workers   int
	config    string
	db        string
	logFile   string
	pidFile   string
	logFormat string
	logTarget string
	// syslogFacility and syslogTag apply to --log-target syslog.
	syslogFacility string
	syslogTag      string
	metrics        string
	version        bool
}

func newDaemonFlagSet(f *daemonFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sersyncd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&f.detach, "d", false, "detach into the background (log to --log-file, pid in --pid-file)")
	fs.BoolVar(&f.fullPush, "r", false, "push the whole tree to every target at start")
	fs.IntVar(&f.workers, "n", 10, "rsync processes running at once, shared fairly by the targets")
	fs.StringVar(&f.config, "o", defaultConfig, "the sersync `confxml.xml`")
	fs.StringVar(&f.db, "db", "", "the queue `file` (default from <sersyncd db>, else "+defaultDB+")")
	fs.StringVar(&f.logFile, "log-file", "", "log `file` with -d (default from <sersyncd logFile>, else "+defaultLogFile+")")
	fs.StringVar(&f.pidFile, "pid-file", "", "pid `file` with -d (default from <sersyncd pidFile>, else "+defaultPidFile+")")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logTarget, "log-target", "", "where the log goes: stderr, file (--log-file) or syslog (default stderr, which -d sends to --log-file)")
	fs.StringVar(&f.syslogFacility, "syslog-facility", defaultSyslogFacility, "syslog `facility` with --log-target syslog")
	fs.StringVar(&f.syslogTag, "syslog-tag", defaultSyslogTag, "syslog `tag` with --log-target syslog")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus /metrics and /healthz on this `address` (default from <sersyncd metrics>, else off)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	return fs
}

func usage(w io.Writer) {
	var f daemonFlags
	fs := newDaemonFlagSet(&f, w)
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fmt.Fprintf(w, usageText, b.String())
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return runCheck(args[1:], stdout, stderr)
		case "retry":
			return runRetry(args[1:], stdout, stderr)
		case "status":
			return runStatus(args[1:], stdout, stderr)
		case "verify":
			return runVerify(args[1:], stdout, stderr)
		case "help", "-h", "-help", "--help":
			usage(stdout)
			return exitOK
		}
	}
	var f daemonFlags
	// The flag package's own message would be a second line; ours names the fix.
	fs := newDaemonFlagSet(&f, io.Discard)
	if err := fs.Parse(expandClusters(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "sersyncd: %v (see sersyncd --help)\n", err)
		return exitUsage
	}
	if f.version {
		fmt.Fprintf(stdout, "sersyncd %s\n", version)
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sersyncd: unexpected argument %q (see sersyncd --help)\n", fs.Arg(0))
		return exitUsage
	}
	if err := emptyFlag(fs); err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitUsage
	}
	if f.workers < 1 {
		fmt.Fprintf(stderr, "sersyncd: -n %d: the worker count must be at least 1\n", f.workers)
		return exitUsage
	}
	if err := checkLogFlags(f); err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitUsage
	}
	cfg, err := config.Load(f.config)
	if err == nil {
		err = plugin.Check(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitUsage
	}
	f.db = firstNonEmpty(f.db, cfg.Daemon.DB, defaultDB)
	f.logFile = firstNonEmpty(f.logFile, cfg.Daemon.LogFile, defaultLogFile)
	f.pidFile = firstNonEmpty(f.pidFile, cfg.Daemon.PidFile, defaultPidFile)
	f.metrics = firstNonEmpty(f.metrics, cfg.Daemon.Metrics)
	if err := checkWrittenFiles(cfg, f.logFile, f.pidFile, f.detach); err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitUsage
	}
	if f.detach && os.Getenv(detachedEnv) == "" {
		return detach(f, stderr)
	}
	return runDaemon(f, cfg, stderr)
}

// emptyFlag refuses a file or address flag given as "": each of them falls
// back to the config's value or a default when left out, so an empty one
// would silently mean a file or address the operator did not write (`--db
// ""` used /var/lib/sersyncd/queue.db and created it).
func emptyFlag(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "o", "db", "log-file", "pid-file", "metrics":
			if f.Value.String() == "" && err == nil {
				dash := "--"
				if len(f.Name) == 1 {
					dash = "-"
				}
				err = fmt.Errorf("%s%s \"\": empty; leave the flag out for the default, or name a file or address", dash, f.Name)
			}
		}
	})
	return err
}

// checkWrittenFiles refuses a failLog, and with -d a log or pid file, that
// is a symbolic link or sits where someone else could make it one (see
// safefile): as root, sersyncd would write wherever such a link points.
func checkWrittenFiles(cfg *config.Config, logFile, pidFile string, detach bool) error {
	if cfg.FailLog.Path != "" {
		if err := retry.CheckFailLog(cfg.FailLog.Path); err != nil {
			return err
		}
	}
	if !detach {
		return nil
	}
	if err := safefile.Check(logFile); err != nil {
		return fmt.Errorf("log file %w", err)
	}
	if err := safefile.Check(pidFile); err != nil {
		return fmt.Errorf("pid file %w", err)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func runDaemon(f daemonFlags, cfg *config.Config, stderr io.Writer) int {
	log, logClose, err := openLogger(f, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitRuntime
	}
	defer logClose.Close()
	// sersyncd's own work is reading events and writing the queue; rsync
	// processes do the copying. One thread for Go code is plenty, and it
	// spares the scheduler handing each of a thousand events a second to
	// another core: under 500 changes/s the daemon's CPU went from 15% to
	// 9% of a core (docs/BENCHMARKS.md). GOMAXPROCS in the environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	memCtx, stopMem := context.WithCancel(context.Background())
	defer stopMem()
	daemon.LimitMemory(memCtx)
	hb := heartbeat.New()
	startWatchdog(memCtx, hb, log)
	systemd := notifier{log}
	d, err := daemon.Start(daemon.Options{
		Config:          cfg,
		DBPath:          f.db,
		Workers:         f.workers,
		FullPushAtStart: f.fullPush,
		MetricsAddr:     f.metrics,
		Terminal:        f.logFormat == "text" && logsToStderr(f) && os.Getenv(detachedEnv) == "" && term.IsTerminal(int(os.Stderr.Fd())),
		Log:             log,
		Heartbeat:       hb,
	})
	if err != nil {
		log.Error(err)
		return exitRuntime
	}
	// Signals are handled from before anyone is told the daemon runs: a
	// `systemctl reload` right after start must not find SIGHUP's default
	// action (exit) in place.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// Written once every watch is set, so the parent of -d returns only
	// when changes are being seen.
	if os.Getenv(detachedEnv) != "" {
		if err := writePidFile(f.pidFile); err != nil {
			log.Error(err)
			return exitRuntime
		}
		defer os.Remove(f.pidFile)
	}
	// The same moment for systemd: a change made after `systemctl start`
	// returns is seen.
	systemd.ready(fmt.Sprintf("watching %d directories", d.Snapshot().WatchedDirs))
	go func() {
		stopping := false
		for sig := range sigs {
			switch {
			case sig == syscall.SIGHUP && stopping:
				log.Warn("SIGHUP: ignored, the daemon is stopping")
			case sig == syscall.SIGHUP:
				systemd.reloading()
				status := "config reloaded"
				newCfg, err := config.Load(f.config)
				if err == nil {
					err = d.Reload(newCfg)
				}
				if err != nil {
					log.Errorf("SIGHUP: keeping the running config: %v", err)
					status = "reload refused, the running config stays: " + err.Error()
				}
				systemd.ready(status)
			case !stopping:
				stopping = true
				systemd.stopping()
				log.Infof("%s: stopping gracefully; send it again to stop at once", sig)
				stop()
			default:
				log.Warnf("%s again: stopping at once", sig)
				d.Kill()
			}
		}
	}()
	log.WithFields(logrus.Fields{"version": version, "workers": f.workers, "queue": f.db}).Info("sersyncd started")
	if err := d.Run(ctx); err != nil {
		log.Error(err)
		return exitRuntime
	}
	log.Info("sersyncd stopped")
	return exitOK
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sersyncd check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("o", defaultConfig, "the sersync `confxml.xml`")
	var probes []string
	fs.Func("path", "say whether `P` is pushed or excluded, and by which expression (repeatable)", func(p string) error {
		if p == "" {
			return errors.New("empty path")
		}
		probes = append(probes, p)
		return nil
	})
	if code := parseSubcommand(fs, "check", args, stdout, stderr); code >= 0 {
		return code
	}
	cfg, err := config.Load(*path)
	if err == nil {
		err = plugin.Check(cfg)
	}
	if err == nil {
		// The files -d would write, as the config names them.
		err = checkWrittenFiles(cfg, firstNonEmpty(cfg.Daemon.LogFile, defaultLogFile), firstNonEmpty(cfg.Daemon.PidFile, defaultPidFile), true)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitUsage
	}
	if len(probes) > 0 {
		return checkPaths(cfg, probes, stdout, stderr)
	}
	printSettings(stdout, cfg)
	return exitOK
}
