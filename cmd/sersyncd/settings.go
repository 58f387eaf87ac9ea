package main

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/pusher"
)

// printSettings shows what the daemon will do with cfg, in the terms of the
// rsync command lines it will run.
func printSettings(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "config:    %s\n", cfg.File)
	fmt.Fprintf(w, "localpath: %s\n", cfg.LocalPath)
	for _, t := range pusher.NewRsyncTargets(cfg, nil) {
		fmt.Fprintf(w, "target:    %s\n", t.Name())
		fmt.Fprintf(w, "  %s %s\n", quoteArgs([]string{cmp.Or(t.Binary, "rsync")}), quoteArgs(t.PushArgs()))
	}
	e := cfg.Events
	var on []string
	for _, s := range []struct {
		name string
		on   bool
	}{
		{"delete", e.Delete}, {"createFolder", e.CreateFolder}, {"createFile", e.CreateFile},
		{"closeWrite", e.CloseWrite}, {"moveFrom", e.MoveFrom}, {"moveTo", e.MoveTo},
		{"attrib", e.Attrib}, {"modify", e.Modify},
	} {
		if s.on {
			on = append(on, s.name)
		}
	}
	fmt.Fprintf(w, "events:    %s\n", strings.Join(on, " "))
	if cfg.Filter.Enabled && len(cfg.Filter.Excludes) > 0 {
		fmt.Fprintf(w, "excludes:  %s (regular expressions on the path below localpath)\n", quoteArgs(cfg.Filter.Excludes))
	} else {
		fmt.Fprintf(w, "excludes:  none\n")
	}
	fmt.Fprintf(w, "settle:    %s (max hold %s), batch max %d, backoff max %s\n",
		cfg.Daemon.Settle, cfg.Daemon.MaxHold, cfg.Daemon.BatchMax, cfg.Daemon.BackoffMax)
	if cfg.Daemon.Standby > 0 {
		fmt.Fprintf(w, "standby:   an rsync per target started ahead after each push, kept %s\n", cfg.Daemon.Standby)
	} else {
		fmt.Fprintf(w, "standby:   off\n")
	}
	fmt.Fprintf(w, "failLog:   %s, replay every %s\n", cfg.FailLog.Path, cfg.FailLog.Interval)
	if cfg.Crontab.Enabled {
		fmt.Fprintf(w, "crontab:   full push every %s", cfg.Crontab.Interval)
		if cfg.Crontab.FilterEnabled {
			fmt.Fprintf(w, ", excluding %s", quoteArgs(cfg.Crontab.FilterExcludes))
		}
		fmt.Fprintln(w)
	}
	for _, warn := range cfg.Warnings {
		fmt.Fprintf(w, "warning:   %s\n", warn)
	}
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]|&;<>()") {
			q[i] = strconv.Quote(a)
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
