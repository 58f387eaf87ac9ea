package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/daemon"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/status"
)

type toolFlags struct {
	config  string
	db      string
	target  string
	source  string
	json    bool
	timeout time.Duration
}

func parseToolFlags(name string, args []string, stdout, stderr io.Writer, withTarget, withJSON bool) (*toolFlags, *config.Config, int) {
	var f toolFlags
	fs := flag.NewFlagSet("sersyncd "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.config, "o", defaultConfig, "the sersync confxml.xml")
	fs.StringVar(&f.db, "db", "", "the queue file")
	if withTarget {
		fs.StringVar(&f.target, "target", "", "only this target (as `sersyncd status` names it)")
		fs.StringVar(&f.source, "source", "", "only the targets of this tree (a `localpath` of the config)")
		fs.DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up after this long")
	}
	if withJSON {
		fs.BoolVar(&f.json, "json", false, "print one JSON document")
	}
	if code := parseSubcommand(fs, name, args, stdout, stderr); code >= 0 {
		return nil, nil, code
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return nil, nil, exitUsage
	}
	f.db = firstNonEmpty(f.db, cfg.Daemon.DB, defaultDB)
	return &f, cfg, -1
}

// retryTargets are the targets `retry` replays: --target, the targets of
// the --source tree, or [""] (every target).
func retryTargets(cfg *config.Config, f *toolFlags) ([]string, error) {
	if f.source == "" {
		return []string{f.target}, nil
	}
	src := cfg.SourceOf(filepath.Clean(f.source))
	if !filepath.IsAbs(f.source) || src == nil || src.Path != filepath.Clean(f.source) {
		return nil, fmt.Errorf("--source %q: not a <localpath watch> of %s (%s)", f.source, cfg.File, localpaths(cfg))
	}
	var names []string
	for _, r := range src.Remotes {
		names = append(names, cfg.Destination(r))
	}
	if f.target == "" {
		return names, nil
	}
	if !slices.Contains(names, f.target) {
		return nil, fmt.Errorf("--target %q is not a target of --source %s (its targets: %s)", f.target, src.Path, strings.Join(names, ", "))
	}
	return []string{f.target}, nil
}

// openOffline opens the queue when no daemon answers on its socket.
func openOffline(cfg *config.Config, f *toolFlags, stderr io.Writer) (*daemon.Tool, error) {
	if _, err := os.Stat(f.db); err != nil {
		return nil, fmt.Errorf("no daemon runs and there is no queue file %s (%v): has sersyncd run with this --db?", f.db, errors.Unwrap(err))
	}
	log := logrus.New()
	log.SetOutput(stderr)
	tool, err := daemon.OpenTool(cfg, f.db, log)
	var damaged *queue.DamagedError
	if errors.As(err, &damaged) {
		return nil, fmt.Errorf("%w; left as it is: start sersyncd to move it aside and push the whole tree to every target", damaged)
	}
	if errors.Is(err, queue.ErrLocked) {
		return nil, fmt.Errorf("queue file %s is locked by another process, but no daemon answers on %s", f.db, control.SocketPath(f.db))
	}
	return tool, err
}

func runRetry(args []string, stdout, stderr io.Writer) int {
	f, cfg, code := parseToolFlags("retry", args, stdout, stderr, true, false)
	if f == nil {
		return code
	}
	targets, err := retryTargets(cfg, f)
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd retry: %v\n", err)
		return exitUsage
	}
	var results []retry.Result
	resp, err := callRetry(f, targets)
	switch {
	case err == nil && resp.Error != "":
		fmt.Fprintf(stderr, "sersyncd retry: %s\n", resp.Error)
		return exitRuntime
	case err == nil:
		results = resp.Replay
	case errors.Is(err, control.ErrNoDaemon):
		tool, err := openOffline(cfg, f, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sersyncd retry: %v\n", err)
			return exitRuntime
		}
		defer tool.Close()
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		for _, target := range targets {
			rs, err := tool.Replay(ctx, target)
			if err != nil {
				fmt.Fprintf(stderr, "sersyncd retry: %v\n", err)
				return exitUsage
			}
			results = append(results, rs...)
		}
	default:
		fmt.Fprintf(stderr, "sersyncd retry: %v\n", err)
		return exitRuntime
	}
	failing := 0
	for _, r := range results {
		fmt.Fprintf(stdout, "%s: replayed %d, still failing %d", r.Target, r.Replayed, r.StillFailing)
		if r.StillFailing > 0 && r.Reason != "" {
			fmt.Fprintf(stdout, ": %s", r.Reason)
		}
		fmt.Fprintln(stdout)
		failing += r.StillFailing
	}
	if failing > 0 {
		return exitRuntime
	}
	return exitOK
}

// callRetry asks the running daemon to replay each target, all at once
// (as it replays every target at once for no --target), and gathers the
// answers in targets' order; the first error or refusal is the answer.
func callRetry(f *toolFlags, targets []string) (*control.Response, error) {
	resps := make([]*control.Response, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, target := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i], errs[i] = control.Call(control.SocketPath(f.db), control.Request{Cmd: "retry", Target: target}, f.timeout)
		}()
	}
	wg.Wait()
	all := &control.Response{}
	for i := range targets {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if resps[i].Error != "" {
			return resps[i], nil
		}
		all.Replay = append(all.Replay, resps[i].Replay...)
	}
	return all, nil
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	f, cfg, code := parseToolFlags("status", args, stdout, stderr, false, true)
	if f == nil {
		return code
	}
	var st *control.Status
	resp, err := control.Call(control.SocketPath(f.db), control.Request{Cmd: "status"}, 30*time.Second)
	switch {
	case err == nil && resp.Error != "":
		fmt.Fprintf(stderr, "sersyncd status: %s\n", resp.Error)
		return exitRuntime
	case err == nil:
		st = resp.Status
	case errors.Is(err, control.ErrNoDaemon):
		tool, err := openOffline(cfg, f, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "sersyncd status: %v\n", err)
			return exitRuntime
		}
		st, err = tool.Status()
		tool.Close()
		if err != nil {
			fmt.Fprintf(stderr, "sersyncd status: %v\n", err)
			return exitRuntime
		}
	default:
		fmt.Fprintf(stderr, "sersyncd status: %v\n", err)
		return exitRuntime
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return exitRuntime
		}
		return exitOK
	}
	printStatus(stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st *control.Status) {
	if st.Running {
		fmt.Fprintf(w, "daemon:  running, pid %d, %d watched directories", st.PID, st.WatchedDirs)
		if st.Overflows > 0 {
			fmt.Fprintf(w, ", %d inotify overflows", st.Overflows)
		}
		fmt.Fprintln(w)
		if st.Degraded != "" {
			fmt.Fprintf(w, "watch:   DEGRADED: %s\n", st.Degraded)
		}
	} else {
		fmt.Fprintln(w, "daemon:  not running")
	}
	fmt.Fprintf(w, "queue:   %s\n", st.Queue)
	if st.Missed != "" {
		if len(st.Sources) > 1 {
			// The reason names the tree; only its targets owe the push.
			fmt.Fprintf(w, "owed:    a full push, since changes may have been missed: %s\n", st.Missed)
		} else {
			fmt.Fprintf(w, "owed:    a full push of every target, since changes may have been missed: %s\n", st.Missed)
		}
	}
	source := ""
	for _, t := range st.Targets {
		if t.Source != source {
			source = t.Source
			printSourceStatus(w, st, source)
		}
		fmt.Fprintf(w, "target:  %s\n", t.Name)
		fmt.Fprintf(w, "  pending %d, failed %d, lag %s\n", t.Pending, t.Failed, (time.Duration(t.LagSeconds * float64(time.Second))).Round(time.Millisecond))
		if !t.LastSuccess.IsZero() {
			fmt.Fprintf(w, "  last success %s\n", t.LastSuccess.Format(time.RFC3339))
		}
		if t.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", t.LastError)
		}
		if v := t.Verify; v != nil {
			printVerifyStatus(w, v)
		}
		if t.ConsecutiveFailures > 0 {
			fmt.Fprintf(w, "  %d failures in a row", t.ConsecutiveFailures)
			if !t.RetryAt.IsZero() {
				fmt.Fprintf(w, ", next try %s", t.RetryAt.Format(time.RFC3339))
			}
			fmt.Fprintln(w)
		}
	}
}

// printSourceStatus is the line that heads the targets of one tree.
func printSourceStatus(w io.Writer, st *control.Status, root string) {
	fmt.Fprintf(w, "source:  %s", root)
	for _, s := range st.Sources {
		if s.Path != root {
			continue
		}
		if st.Running && len(st.Sources) > 1 {
			fmt.Fprintf(w, ", %d watched directories", s.WatchedDirs)
		}
		if s.Degraded != "" && len(st.Sources) > 1 {
			fmt.Fprintf(w, ", DEGRADED")
		}
	}
	fmt.Fprintln(w)
}

// printVerifyStatus is a target's last scheduled verify in `status`.
func printVerifyStatus(w io.Writer, v *status.Verify) {
	how := "size and mtime"
	if v.Checksum {
		how = "contents"
	}
	fmt.Fprintf(w, "  verify (%s) %s: ", how, v.Time.Format(time.RFC3339))
	switch {
	case v.Error != "":
		fmt.Fprintf(w, "could not check the target: %s", v.Error)
		if !v.LastSuccess.IsZero() {
			fmt.Fprintf(w, "; last checked %s: %d paths differed", v.LastSuccess.Format(time.RFC3339), v.Drift)
		}
	case v.Drift == 0:
		fmt.Fprint(w, "equal to the source")
	default:
		fmt.Fprintf(w, "DIFFERS: %d paths (%d missing, %d differing, %d extra)", v.Drift, v.Missing, v.Differing, v.Extra)
		if v.Repaired > 0 {
			fmt.Fprintf(w, ", %d queued to repair", v.Repaired)
		}
	}
	if v.Kept > 0 {
		fmt.Fprintf(w, "; %d on the target alone kept (delete is off)", v.Kept)
	}
	fmt.Fprintln(w)
}

// parseSubcommand parses a subcommand's flags: help, a bad or empty flag
// and a stray argument end it with their exit code; -1 means go on.
func parseSubcommand(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "sersyncd %s: %v (see sersyncd --help)\n", name, err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sersyncd %s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage
	}
	if err := emptyFlag(fs); err != nil {
		fmt.Fprintf(stderr, "sersyncd %s: %v\n", name, err)
		return exitUsage
	}
	return -1
}
