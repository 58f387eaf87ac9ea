package watch

// Directory watches: a watch on every directory of the tree, set before
// the directory is read; new directories scanned, gone ones unwatched, all
// re-watched after an overflow; and the degraded mode when the kernel's
// watch limit is reached. All of it on the directory goroutine (dirWorker),
// which may take long without holding up the event reader.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scanNoteChunk is how many files a scan notes at a time (foundInTree).
const scanNoteChunk = 1024

type dirOpKind int

const (
	opScan    dirOpKind = iota // watch a new directory subtree (its tree change waits for it)
	opUnwatch                  // drop the watches of a directory subtree that went away
	opResync                   // re-add every watch, then ask for a full push
)

type dirOp struct {
	kind dirOpKind
	rel  string
	tree *held // opScan: the pending tree change rel belongs to (trees.go)
}

// maxUserWatchesPath is the sysctl that bounds inotify watches per user.
const maxUserWatchesPath = "/proc/sys/fs/inotify/max_user_watches"

// WatchLimitError says that the kernel refused more inotify watches
// (ENOSPC): which sysctl to raise, and by how much.
type WatchLimitError struct {
	Dirs   int // directories watched
	Total  int // directories of the tree (not excluded) as far as known; at least Dirs+Failed
	Failed int // directories whose watch the kernel refused
	Limit  int // fs.inotify.max_user_watches when it happened, 0 if unknown
	Err    error
}

func (e *WatchLimitError) Error() string {
	missing := max(e.Total-e.Dirs, e.Failed, 1)
	limit := "unknown"
	suggest := 2*e.Total + 8192
	if e.Limit > 0 {
		limit = strconv.Itoa(e.Limit)
		// Room for the missing watches, for other inotify users of this
		// uid and for the tree to grow, rounded up to a multiple of 1024.
		suggest = (e.Limit + missing + max(1024, e.Total/4) + 1023) / 1024 * 1024
	}
	return fmt.Sprintf("inotify watch limit reached: %d of the tree's %d directories are watched, %d are not "+
		"(fs.inotify.max_user_watches=%s, shared by every inotify user of this uid); raise it by at least %d, "+
		"e.g. sysctl -w fs.inotify.max_user_watches=%d (and in /etc/sysctl.d/ to keep it): %v",
		e.Dirs, max(e.Total, e.Dirs+e.Failed), missing, limit, missing, suggest, e.Err)
}

func (e *WatchLimitError) Unwrap() error { return e.Err }

func readSysctlInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// Degraded returns why some directories have no watch (their changes are
// caught by a full push every DegradedFullSyncEvery), or nil when every
// directory is watched.
func (w *Watcher) Degraded() *WatchLimitError {
	w.statMu.Lock()
	defer w.statMu.Unlock()
	return w.degraded
}

// enterDegraded records limit; it reports whether the watcher was not
// degraded before, and logs only then.
func (w *Watcher) enterDegraded(limit *WatchLimitError) bool {
	w.statMu.Lock()
	was := w.degraded != nil
	if was && w.degraded.Total > limit.Total {
		limit.Total = w.degraded.Total
	}
	w.degraded = limit
	w.statMu.Unlock()
	if !was {
		w.opt.Log.WithError(limit).Errorf("some directories cannot be watched: their changes are not seen; "+
			"pushing the whole tree every %s until every directory is watched", w.opt.DegradedFullSyncEvery)
	}
	return !was
}

// Dirs returns the number of watched directories.
func (w *Watcher) Dirs() int {
	w.dirMu.Lock()
	defer w.dirMu.Unlock()
	return len(w.dirs)
}

// watchTree adds a watch on rel and every directory below it, each watch
// before its directory is read, so a directory made meanwhile is either
// read or reported. When the kernel refuses a watch (ENOSPC) the walk goes
// on and a *WatchLimitError is returned at the end. What a new directory
// holds is not recorded here: its tree change, handed on after this scan,
// pushes all of it (trees.go); the files found are only noted in tree, so
// that one still being written holds it.
func (w *Watcher) watchTree(rel string, tree *held) error {
	root := w.abs(rel)
	var limit *WatchLimitError
	seen := 0
	// A directory whose watch the kernel refused for another reason than
	// the limit: neither its changes nor what is in it are seen.
	var unwatched string
	defer func() {
		if unwatched != "" {
			w.requestFullSync(unwatched)
		}
	}()
	var found []string
	noteFound := func() {
		if len(found) > 0 {
			w.foundInTree(tree, found, time.Now())
			found = found[:0]
		}
	}
	defer noteFound()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		r, _ := w.rel(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != w.opt.Root {
				return nil // vanished while we walked: its removal is an event of its own
			}
			if p == root && p != w.opt.Root {
				w.opt.Log.WithError(err).Warnf("scan directory %q", r)
				return nil
			}
			if p == w.opt.Root {
				return fmt.Errorf("read watched directory %s: %w", p, err)
			}
			w.opt.Log.WithError(err).Warnf("scan %q", r)
			return nil
		}
		if r != "" && w.opt.Filter.ExcludedAs(r, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			if tree != nil {
				if found = append(found, r); len(found) >= scanNoteChunk {
					noteFound()
				}
			}
			return nil
		}
		seen++
		if err := w.in.add(p); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				if limit == nil {
					limit = &WatchLimitError{Err: err, Limit: readSysctlInt(maxUserWatchesPath)}
				}
				limit.Failed++
				if p == w.opt.Root {
					return nil
				}
				return nil // unwatched, but still read: its tree push carries what is in it now
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return filepath.SkipDir
			}
			if p == w.opt.Root {
				return fmt.Errorf("watch %s: %w", p, err)
			}
			w.opt.Log.WithError(err).Errorf("watch directory %q: its changes are not seen; pushing the whole tree", r)
			if unwatched == "" {
				unwatched = fmt.Sprintf("directory %q could not be watched: %v", r, err)
			}
			return filepath.SkipDir
		}
		w.dirMu.Lock()
		w.dirs[r] = struct{}{}
		w.dirMu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	if limit != nil {
		limit.Dirs = w.Dirs()
		if rel == "" {
			limit.Total = seen
		} else {
			limit.Total = limit.Dirs + limit.Failed
		}
		return limit
	}
	return nil
}

func (w *Watcher) unwatchTree(rel string) {
	w.dirMu.Lock()
	var gone []string
	prefix := rel + "/"
	for d := range w.dirs {
		if d == rel || strings.HasPrefix(d, prefix) {
			gone = append(gone, d)
			delete(w.dirs, d)
		}
	}
	w.dirMu.Unlock()
	for _, d := range gone {
		// The kernel drops a deleted directory's watch itself; a moved one
		// keeps reporting under its old name until removed here.
		w.in.remove(w.abs(d))
	}
}

func (w *Watcher) isDir(rel string) bool {
	w.dirMu.Lock()
	defer w.dirMu.Unlock()
	_, ok := w.dirs[rel]
	return ok
}

func (w *Watcher) queueDirOp(op dirOp) {
	w.dirMu.Lock()
	if op.kind == opResync {
		if w.resyncQueued {
			w.dirMu.Unlock()
			return // the one waiting re-watches and pushes everything anyway
		}
		w.resyncQueued = true
	}
	w.dirOps = append(w.dirOps, op)
	w.dirMu.Unlock()
	select {
	case w.dirWake <- struct{}{}:
	default:
	}
}

// runDirOps does the directory operations queued so far, in order.
func (w *Watcher) runDirOps() {
	w.dirMu.Lock()
	ops := w.dirOps
	w.dirOps = nil
	w.dirMu.Unlock()
	for _, op := range ops {
		w.doDirOp(op)
	}
}

func (w *Watcher) dirWorker(stop <-chan struct{}) {
	var ticker *time.Ticker
	var tick <-chan time.Time
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		w.runDirOps()
		switch degraded := w.Degraded() != nil; {
		case degraded && ticker == nil:
			ticker = time.NewTicker(w.opt.DegradedFullSyncEvery)
			tick = ticker.C
		case !degraded && ticker != nil:
			ticker.Stop()
			ticker, tick = nil, nil
		}
		select {
		case <-stop:
			// Scan what was queued meanwhile: a new directory's files are
			// only found by its scan.
			w.runDirOps()
			return
		case <-w.dirWake:
		case <-tick:
			w.degradedTick()
		}
	}
}

// degradedTick tries the missing watches again and pushes the whole tree:
// what changed in unwatched directories since the last tick arrives now.
func (w *Watcher) degradedTick() {
	err := w.watchTree("", nil)
	var limit *WatchLimitError
	switch {
	case err == nil:
		w.statMu.Lock()
		w.degraded = nil
		w.statMu.Unlock()
		w.opt.Log.WithField("dirs", w.Dirs()).Info("every directory is watched again; no more periodic full pushes")
	case errors.As(err, &limit):
		w.enterDegraded(limit)
		w.opt.Log.WithField("unwatched", limit.Failed).Debug("still short of inotify watches; pushing the whole tree")
	default:
		w.opt.Log.WithError(err).Error("re-watch tree")
	}
	w.requestFullSync(missedUnwatched)
}

func (w *Watcher) doDirOp(op dirOp) {
	switch op.kind {
	case opScan:
		err := w.watchTree(op.rel, op.tree)
		if op.tree != nil {
			defer w.scanned(op.tree)
		}
		var limit *WatchLimitError
		switch {
		case err == nil:
		case errors.As(err, &limit):
			// What the new directories hold now goes with their tree; later changes
			// in them are caught by the periodic full push.
			if w.enterDegraded(limit) {
				w.requestFullSync(missedUnwatched)
			}
		default:
			w.opt.Log.WithError(err).Errorf("watch new directory %q; pushing the whole tree instead", op.rel)
			w.requestFullSync(fmt.Sprintf("new directory %q could not be watched: %v", op.rel, err))
		}
	case opUnwatch:
		w.unwatchTree(op.rel)
	case opResync:
		w.dirMu.Lock()
		w.resyncQueued = false
		w.dirMu.Unlock()
		err := w.watchTree("", nil)
		var limit *WatchLimitError
		switch {
		case err == nil:
		case errors.As(err, &limit):
			w.enterDegraded(limit)
		default:
			w.opt.Log.WithError(err).Error("re-watch tree after overflow")
		}
		w.requestFullSync(missedOverflow)
	}
}
