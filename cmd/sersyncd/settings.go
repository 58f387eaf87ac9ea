package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/daemon"
	"github.com/sersyncd/sersyncd/internal/filter"
)

// printSettings shows what the daemon will do with cfg, in the terms of the
// rsync command lines it will run: each tree with its targets, then what
// they share.
func printSettings(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "config:    %s\n", cfg.File)
	for i := range cfg.Sources {
		printSource(w, cfg, &cfg.Sources[i])
	}
	printCommon(w, cfg)
}

// printSource shows one tree, the filter of its own if it has one, and its
// targets' command lines.
func printSource(w io.Writer, cfg *config.Config, src *config.Source) {
	fmt.Fprintf(w, "localpath: %s\n", src.Path)
	if src.OwnFilter {
		if excl := src.Excludes(); len(excl) > 0 {
			fmt.Fprintf(w, "  excludes:  %s (its own <filter>, in place of the top-level one)\n", quoteArgs(excl))
		} else {
			fmt.Fprintf(w, "  excludes:  none (its own <filter>, in place of the top-level one)\n")
		}
	}
	if src.OwnRules {
		if src.RsyncRules.Enabled {
			fmt.Fprintf(w, "  rules:     %s (its own <rsyncFilter>, in place of the top-level one)\n", src.RsyncRules.File)
		} else {
			fmt.Fprintf(w, "  rules:     none (its own <rsyncFilter>, in place of the top-level one)\n")
		}
	}
	flt, err := filter.NewWithRules(src.Excludes(), src.RsyncRules.Rules)
	if err != nil {
		flt = nil // refused by config.Load already
	}
	for _, t := range daemon.RsyncTargets(cfg, src, flt, nil) {
		fmt.Fprintf(w, "target:    %s\n", t.Name())
		bin := quoteArgs([]string{cmp.Or(t.Options().Binary, config.DefaultRsyncBinary)})
		fmt.Fprintf(w, "  changes:   %s %s\n", bin, quoteArgs(t.PushArgs()))
		if !flt.HasExpressions() {
			stdin := ""
			if !flt.Rules().Empty() {
				stdin = "  (stdin: the rules of " + flt.Rules().File + ")"
			}
			fmt.Fprintf(w, "  full push: %s %s%s\n", bin, quoteArgs(t.FullPushArgs(nil)), stdin)
		} else {
			// See rsync.Target.FullPush: the regular expressions
			// cannot be rsync rules, so the walked tree goes as lists.
			if !t.Options().KeepDeleted {
				fmt.Fprintf(w, "  full push: %s %s  (stdin: every excluded path, anchored; lists what the target has alone)\n", bin,
					quoteArgs(t.DeletionsArgs(nil)))
				fmt.Fprintf(w, "  full push: %s %s  (stdin: those of them the filter does not exclude)\n", bin, quoteArgs(t.PushArgs()))
			}
			fmt.Fprintf(w, "  full push: %s %s  (stdin: every path not excluded)\n", bin, quoteArgs(t.CopyListedArgs(nil)))
		}
		fmt.Fprintf(w, "  verify:    rsync %s  (stdin: every excluded path, anchored)\n", quoteArgs(t.VerifyArgs(cfg.Daemon.VerifyChecksum)))
	}
}

// printSettings, continued: what is not one tree's.
func printCommon(w io.Writer, cfg *config.Config) {
	if !cfg.Events.Delete {
		fmt.Fprintf(w, "delete:    off: nothing is ever deleted on a target, by any push\n")
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
	if excl := activeExcludes(cfg); len(excl) > 0 {
		fmt.Fprintf(w, "excludes:  %s (regular expressions matching a whole path below localpath, as sersync; try one with check --path)\n", quoteArgs(excl))
	} else {
		fmt.Fprintf(w, "excludes:  none\n")
	}
	if cfg.RsyncRules.Enabled {
		fmt.Fprintf(w, "rules:     %s (rsync filter rules; a path is pushed iff rsync would transfer it)\n", cfg.RsyncRules.File)
	}
	fmt.Fprintf(w, "settle:    %s (max hold %s), batch max %d, backoff max %s\n",
		cfg.Daemon.Settle, cfg.Daemon.MaxHold, cfg.Daemon.BatchMax, cfg.Daemon.BackoffMax)
	if cfg.Daemon.Standby > 0 {
		fmt.Fprintf(w, "standby:   an rsync per target started ahead after each push, kept %s\n", cfg.Daemon.Standby)
	} else {
		fmt.Fprintf(w, "standby:   off\n")
	}
	fmt.Fprintf(w, "failLog:   %s, replay every %s\n", cfg.FailLog.Path, cfg.FailLog.Interval)
	if d := cfg.Daemon; d.Verify > 0 {
		how, then := "size and mtime", "reports only"
		if d.VerifyChecksum {
			how = "contents"
		}
		if d.VerifyRepair {
			then = "queues what differs"
		}
		fmt.Fprintf(w, "verify:    every %s, comparing %s, one target at a time at low priority; %s\n", d.Verify, how, then)
	} else {
		fmt.Fprintf(w, "verify:    not scheduled (sersyncd verify compares on demand)\n")
	}
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

// activeExcludes are the filter's expressions when it is on.
func activeExcludes(cfg *config.Config) []string {
	if !cfg.Filter.Enabled {
		return nil
	}
	return cfg.Filter.Excludes
}

// checkPaths answers `check --path`: for each path, pushed or excluded, and
// by which expression of the file. An absolute path is answered by the
// filter of the tree holding it; a relative one is below the only tree.
func checkPaths(cfg *config.Config, paths []string, stdout, stderr io.Writer) int {
	for _, p := range paths {
		src := &cfg.Sources[0]
		rel := p
		if filepath.IsAbs(p) {
			src = cfg.SourceOf(filepath.Clean(p))
			if src == nil {
				fmt.Fprintf(stderr, "sersyncd check: --path %q: not below %s\n", p, localpaths(cfg))
				return exitUsage
			}
			r, err := filepath.Rel(src.Path, p)
			if err != nil {
				fmt.Fprintf(stderr, "sersyncd check: --path %q: not below localpath %s\n", p, src.Path)
				return exitUsage
			}
			rel = r
		} else if len(cfg.Sources) > 1 {
			fmt.Fprintf(stderr, "sersyncd check: --path %q: give the whole path: there are several trees (%s)\n", p, localpaths(cfg))
			return exitUsage
		}
		rel = strings.TrimSuffix(filepath.ToSlash(filepath.Clean(rel)), "/")
		if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			fmt.Fprintf(stderr, "sersyncd check: --path %q: not below localpath %s\n", p, src.Path)
			return exitUsage
		}
		flt, err := filter.NewWithRules(src.Excludes(), src.RsyncRules.Rules)
		if err != nil {
			fmt.Fprintf(stderr, "sersyncd: %s: %v\n", cfg.File, err)
			return exitUsage
		}
		// A directory is matched with a trailing slash too, as sersync did
		// when it set its watches; a path that does not exist is a file.
		fi, err := os.Lstat(filepath.Join(src.Path, rel))
		isDir := err == nil && fi.IsDir()
		isDir = isDir || strings.HasSuffix(p, "/")
		i, form, excluded := flt.Match(rel, isDir)
		if !excluded {
			if rule, ok := flt.Rules().Match(rel, isDir); ok {
				fmt.Fprintf(stdout, "%s: excluded by the rsync rule %s\n", strconv.Quote(rel), rule)
			} else {
				fmt.Fprintf(stdout, "%s: pushed\n", strconv.Quote(rel))
			}
			continue
		}
		fmt.Fprintf(stdout, "%s: excluded by <exclude expression=\"%s\"> (%s:%d), which matches %s\n",
			strconv.Quote(rel), src.Filter.Excludes[i], cfg.File, src.Filter.Lines[i], strconv.Quote(form))
	}
	return exitOK
}

// localpaths lists the trees, for messages.
func localpaths(cfg *config.Config) string {
	var roots []string
	for _, s := range cfg.Sources {
		roots = append(roots, s.Path)
	}
	return "localpath " + strings.Join(roots, ", ")
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
