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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sersyncd/sersyncd/internal/daemon"
	"github.com/sersyncd/sersyncd/internal/rsync"

	"golang.org/x/term"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/control"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/verify"
)

// targetReport is one target's part of `verify --json`.
type targetReport struct {
	*verify.Result
	Repaired int `json:"repaired,omitempty"` // paths queued by --repair
	// RepairedBy is "daemon" (the running daemon queued them and pushes them)
	// or "queue" (none runs: queued in its file for the next start).
	RepairedBy  string `json:"repaired_by,omitempty"`
	RepairError string `json:"repair_error,omitempty"` // why they could not be queued
}

type verifyReport struct {
	Queue   string         `json:"queue,omitempty"` // the queue file --repair used
	Equal   bool           `json:"equal"`           // every target checked and equal to the source
	Targets []targetReport `json:"targets"`
}

func runVerify(args []string, stdout, stderr io.Writer) int {
	var f toolFlags
	var checksum, repair bool
	fs := flag.NewFlagSet("sersyncd verify", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.config, "o", defaultConfig, "the sersync confxml.xml")
	fs.StringVar(&f.db, "db", "", "the queue file (--repair)")
	fs.StringVar(&f.target, "target", "", "only this target")
	fs.BoolVar(&f.json, "json", false, "print one JSON document")
	fs.BoolVar(&checksum, "checksum", false, "compare contents, not size and mtime")
	fs.BoolVar(&repair, "repair", false, "queue the drifted paths as changes")
	if code := parseSubcommand(fs, "verify", args, stdout, stderr); code >= 0 {
		return code
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: %v\n", err)
		return exitUsage
	}
	f.db = firstNonEmpty(f.db, cfg.Daemon.DB, defaultDB)
	var targets []*rsync.Target
	for i := range cfg.Sources {
		src := &cfg.Sources[i]
		flt, err := filter.New(src.Excludes())
		if err != nil {
			fmt.Fprintf(stderr, "sersyncd: %s: %v\n", cfg.File, err)
			return exitUsage
		}
		targets = append(targets, daemon.RsyncTargets(cfg, src, flt, nil)...)
	}
	if f.target != "" {
		var names []string
		for _, t := range targets {
			names = append(names, t.Name())
			if t.Name() == f.target {
				targets = []*rsync.Target{t}
				names = nil
				break
			}
		}
		if names != nil {
			fmt.Fprintf(stderr, "sersyncd verify: --target %q: %s has no such target (it has %s)\n", f.target, cfg.File, strings.Join(names, ", "))
			return exitUsage
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	progress := isTerminal(stderr)
	report := verifyReport{Equal: true}
	if repair {
		report.Queue = f.db
	}
	for _, t := range targets {
		if progress {
			how := "size and mtime"
			if checksum {
				how = "contents: every file is read on both sides, this takes a while"
			}
			fmt.Fprintf(stderr, "verify: %s: comparing %s ...\n", t.Name(), how)
		}
		r := verify.Target(ctx, t, verify.Options{Checksum: checksum})
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "sersyncd verify: %v\n", ctx.Err())
			return exitRuntime
		}
		if progress {
			fmt.Fprintf(stderr, "verify: %s: done in %s\n", t.Name(), time.Duration(r.Seconds*float64(time.Second)).Round(time.Millisecond))
		}
		tr := targetReport{Result: r}
		if repair && r.Error == "" {
			if paths := r.RepairPaths(); len(paths) > 0 {
				tr.Repaired, tr.RepairedBy, err = enqueueRepair(cfg, &f, r.Target, paths, stderr)
				if err != nil {
					tr.RepairError = err.Error()
				}
			}
		}
		report.Equal = report.Equal && r.Equal()
		report.Targets = append(report.Targets, tr)
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return exitRuntime
		}
	} else {
		printVerify(stdout, report)
	}
	if !report.Equal {
		return exitRuntime
	}
	return exitOK
}

// enqueueRepair queues paths for target, as `retry` replays: through the
// running daemon ("daemon"), or in the queue file when none runs ("queue").
func enqueueRepair(cfg *config.Config, f *toolFlags, target string, paths []string, stderr io.Writer) (int, string, error) {
	resp, err := control.Call(control.SocketPath(f.db), control.EnqueueRequest(target, paths), time.Minute)
	switch {
	case err == nil && resp.Error != "":
		return 0, "", errors.New(resp.Error)
	case err == nil:
		return resp.Queued, "daemon", nil
	case errors.Is(err, control.ErrNoDaemon):
		tool, err := openOffline(cfg, f, stderr)
		if err != nil {
			return 0, "", err
		}
		defer tool.Close()
		n, err := tool.Enqueue(target, paths)
		return n, "queue", err
	default:
		return 0, "", err
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func printVerify(w io.Writer, rep verifyReport) {
	for _, tr := range rep.Targets {
		r := tr.Result
		how := "quick check: size and mtime"
		if r.Checksum {
			how = "contents compared"
		}
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "%s: NOT CHECKED: %s\n", r.Target, r.Error)
		case r.Drift() == 0:
			fmt.Fprintf(w, "%s: equal to the source (%s", r.Target, how)
			if r.Kept > 0 {
				fmt.Fprintf(w, "; %d paths on the target alone kept: delete is off", r.Kept)
			}
			fmt.Fprintln(w, ")")
		default:
			fmt.Fprintf(w, "%s: DIFFERS from the source: %s (%s)\n", r.Target, verify.Counts(r), how)
		}
		for _, e := range r.Entries {
			what := e.Type
			if len(e.Changes) > 0 {
				what += ": " + strings.Join(e.Changes, ", ")
			}
			kind := string(e.Kind)
			if e.Kind == rsync.Kept {
				kind = "extra (kept: delete is off)"
			}
			fmt.Fprintf(w, "  %-8s %s (%s)\n", kind, strconv.Quote(e.Path), what)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		switch {
		case tr.RepairError != "":
			fmt.Fprintf(w, "  repair: FAILED: %s\n", tr.RepairError)
		case tr.RepairedBy == "daemon":
			fmt.Fprintf(w, "  repair: queued %d paths; the running daemon pushes them\n", tr.Repaired)
		case tr.RepairedBy == "queue":
			fmt.Fprintf(w, "  repair: queued %d paths in %s; no daemon runs: its next start pushes them\n", tr.Repaired, rep.Queue)
		}
	}
}
