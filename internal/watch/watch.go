// Package watch turns fsnotify's per-directory events into settled,
// filtered, relative paths for the queue.
//
// Three goroutines keep the kernel queue from filling: one only drains
// fsnotify and records paths in memory; one adds and removes watches and
// scans new directories (which can take long); one hands paths that have
// been quiet for the settle time to the sink.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
)

// Sink receives settled paths, relative to the root. Add must make them
// durable before it returns.
type Sink interface {
	Add(paths []string) error
	// AddFullSync asks for a push of the whole tree to every target.
	AddFullSync() error
}

// EventBuffer is the size of fsnotify's channel; a large one rides out
// bursts while the drain goroutine is descheduled.
var EventBuffer uint = 1 << 16

// Options configures a Watcher.
type Options struct {
	Root    string
	Filter  *filter.Filter
	Events  config.Events
	Settle  time.Duration // a path is handed on once quiet this long
	MaxHold time.Duration // ... or once it has been held this long
	Sink    Sink
	Log     logrus.FieldLogger
}

// Watcher watches Root recursively.
type Watcher struct {
	opt Options
	fsw *fsnotify.Watcher

	mu      sync.Mutex
	pending map[string]*change
	wake    chan struct{}

	dirMu   sync.Mutex
	dirs    map[string]struct{} // relative paths of watched directories ("" is the root)
	dirOps  []dirOp
	dirWake chan struct{}

	overflows int
	statMu    sync.Mutex
}

type change struct {
	first, last time.Time
}

type dirOpKind int

const (
	opScan    dirOpKind = iota // watch a new directory subtree and record everything in it
	opUnwatch                  // drop the watches of a directory subtree that went away
	opResync                   // re-add every watch, then ask for a full push
)

type dirOp struct {
	kind dirOpKind
	rel  string
}

// WatchLimitError is returned when the kernel refuses more inotify watches.
type WatchLimitError struct {
	Dirs int
	Err  error
}

func (e *WatchLimitError) Error() string {
	limit := readSysctl("/proc/sys/fs/inotify/max_user_watches")
	return fmt.Sprintf("add inotify watch: limit reached after %d directories (fs.inotify.max_user_watches=%s); raise it, e.g. sysctl -w fs.inotify.max_user_watches=%d: %v",
		e.Dirs, limit, 2*e.Dirs+8192, e.Err)
}

func (e *WatchLimitError) Unwrap() error { return e.Err }

func readSysctl(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// New creates the watcher and sets a watch on every directory of the tree;
// when it returns, every later change is seen.
func New(opt Options) (*Watcher, error) {
	if opt.Settle <= 0 {
		opt.Settle = 20 * time.Millisecond
	}
	if opt.MaxHold < opt.Settle {
		opt.MaxHold = 100 * opt.Settle
	}
	fsw, err := fsnotify.NewBufferedWatcher(EventBuffer)
	if err != nil {
		return nil, fmt.Errorf("start inotify: %w", err)
	}
	w := &Watcher{
		opt:     opt,
		fsw:     fsw,
		pending: map[string]*change{},
		wake:    make(chan struct{}, 1),
		dirs:    map[string]struct{}{},
		dirWake: make(chan struct{}, 1),
	}
	if err := w.watchTree("", false); err != nil {
		fsw.Close()
		return nil, err
	}
	return w, nil
}

// Dirs returns the number of watched directories.
func (w *Watcher) Dirs() int {
	w.dirMu.Lock()
	defer w.dirMu.Unlock()
	return len(w.dirs)
}

// Overflows returns how many times the kernel queue overflowed.
func (w *Watcher) Overflows() int {
	w.statMu.Lock()
	defer w.statMu.Unlock()
	return w.overflows
}

func (w *Watcher) abs(rel string) string {
	if rel == "" {
		return w.opt.Root
	}
	return w.opt.Root + "/" + rel
}

func (w *Watcher) rel(abs string) (string, bool) {
	if abs == w.opt.Root {
		return "", true
	}
	if !strings.HasPrefix(abs, w.opt.Root+"/") {
		return "", false
	}
	return abs[len(w.opt.Root)+1:], true
}

// watchTree adds a watch on rel and every directory below it, each watch
// before its directory is read, so an entry made meanwhile is either read or
// reported. With record, every entry found is recorded as changed.
func (w *Watcher) watchTree(rel string, record bool) error {
	root := w.abs(rel)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
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
		if r != "" && w.opt.Filter.Excluded(r) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if record && r != "" {
			w.record(r, time.Now())
		}
		if !d.IsDir() {
			return nil
		}
		if err := w.fsw.Add(p); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return &WatchLimitError{Dirs: w.Dirs(), Err: err}
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return filepath.SkipDir
			}
			if p == w.opt.Root {
				return fmt.Errorf("watch %s: %w", p, err)
			}
			w.opt.Log.WithError(err).Warnf("watch directory %q", r)
			return filepath.SkipDir
		}
		w.dirMu.Lock()
		w.dirs[r] = struct{}{}
		w.dirMu.Unlock()
		return nil
	})
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
		_ = w.fsw.Remove(w.abs(d))
	}
}

func (w *Watcher) isDir(rel string) bool {
	w.dirMu.Lock()
	defer w.dirMu.Unlock()
	_, ok := w.dirs[rel]
	return ok
}

func (w *Watcher) record(rel string, now time.Time) {
	w.mu.Lock()
	c := w.pending[rel]
	if c == nil {
		w.pending[rel] = &change{first: now, last: now}
	} else {
		c.last = now
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) queueDirOp(op dirOp) {
	w.dirMu.Lock()
	w.dirOps = append(w.dirOps, op)
	w.dirMu.Unlock()
	select {
	case w.dirWake <- struct{}{}:
	default:
	}
}

// Run processes events until ctx ends, then hands every recorded path to
// the sink without waiting for it to settle, and closes the watcher.
func (w *Watcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	fatal := make(chan error, 1)
	stop := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); w.drain(stop, fatal) }()
	go func() { defer wg.Done(); w.dirWorker(stop) }()
	flushErr := w.flushLoop(ctx, fatal)
	close(stop)
	w.fsw.Close()
	wg.Wait()
	if err := w.flush(time.Now(), true); err != nil && flushErr == nil {
		flushErr = err
	}
	return flushErr
}

func (w *Watcher) drain(stop <-chan struct{}, fatal chan<- error) {
	for {
		select {
		case <-stop:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			w.handle(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.statMu.Lock()
				w.overflows++
				w.statMu.Unlock()
				w.opt.Log.Warn("inotify queue overflowed: changes were lost; re-watching and pushing the whole tree")
				w.queueDirOp(dirOp{kind: opResync})
				continue
			}
			w.opt.Log.WithError(err).Error("inotify")
		}
	}
}

func (w *Watcher) handle(ev fsnotify.Event) {
	rel, ok := w.rel(ev.Name)
	if !ok {
		return
	}
	if rel == "" {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.opt.Log.Errorf("watched directory %s was removed or renamed; changes below it are no longer seen", w.opt.Root)
		}
		return
	}
	if w.opt.Filter.Excluded(rel) {
		return
	}
	now := time.Now()
	e := w.opt.Events
	switch {
	case ev.Has(fsnotify.Create):
		fi, err := os.Lstat(ev.Name)
		if err == nil && fi.IsDir() {
			// The scan records the directory and everything made in it
			// before its watch was set.
			w.queueDirOp(dirOp{kind: opScan, rel: rel})
			return
		}
		// sersync's stock config turns createFile off because inotify's
		// close-write covers it; fsnotify has no close-write, so a create
		// counts whenever any switch that would see the new file is on.
		if e.CreateFile || e.CloseWrite || e.MoveTo || e.Modify {
			w.record(rel, now)
		}
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		if w.isDir(rel) {
			w.queueDirOp(dirOp{kind: opUnwatch, rel: rel})
		}
		if (ev.Has(fsnotify.Remove) && e.Delete) || (ev.Has(fsnotify.Rename) && e.MoveFrom) {
			w.record(rel, now)
		}
	case ev.Has(fsnotify.Write):
		if e.CloseWrite || e.Modify {
			w.record(rel, now)
		}
	case ev.Has(fsnotify.Chmod):
		if e.Attrib {
			w.record(rel, now)
		}
	}
}

func (w *Watcher) dirWorker(stop <-chan struct{}) {
	for {
		w.dirMu.Lock()
		ops := w.dirOps
		w.dirOps = nil
		w.dirMu.Unlock()
		for _, op := range ops {
			w.doDirOp(op)
		}
		select {
		case <-stop:
			return
		case <-w.dirWake:
		}
	}
}

func (w *Watcher) doDirOp(op dirOp) {
	switch op.kind {
	case opScan:
		if err := w.watchTree(op.rel, true); err != nil {
			w.opt.Log.WithError(err).Errorf("watch new directory %q; pushing the whole tree instead", op.rel)
			w.requestFullSync()
		}
	case opUnwatch:
		w.unwatchTree(op.rel)
	case opResync:
		if err := w.watchTree("", false); err != nil {
			w.opt.Log.WithError(err).Error("re-watch tree after overflow")
		}
		w.requestFullSync()
	}
}

func (w *Watcher) requestFullSync() {
	for attempt := 0; ; attempt++ {
		err := w.opt.Sink.AddFullSync()
		if err == nil {
			return
		}
		w.opt.Log.WithError(err).Error("queue full push")
		if attempt >= 10 {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
}

func (w *Watcher) flushLoop(ctx context.Context, fatal <-chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, err := w.flushReady()
		if err != nil {
			w.opt.Log.WithError(err).Error("commit changes to queue; keeping them in memory and trying again")
			next = time.Second
		}
		// While paths are pending, next is at most the settle time, so a
		// fresh change never needs an earlier look than the timer gives.
		var timeout <-chan time.Time
		if next > 0 {
			timer.Reset(next)
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return err
		case <-timeout:
		case <-w.wake:
			if next > 0 && !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// flushReady hands on what has settled and returns how long until the next
// recorded path may have (0: nothing pending).
func (w *Watcher) flushReady() (time.Duration, error) {
	now := time.Now()
	if err := w.flush(now, false); err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Duration
	for _, c := range w.pending {
		d := c.last.Add(w.opt.Settle).Sub(now)
		if h := c.first.Add(w.opt.MaxHold).Sub(now); h < d {
			d = h
		}
		if d < time.Millisecond {
			d = time.Millisecond
		}
		if next == 0 || d < next {
			next = d
		}
	}
	return next, nil
}

func (w *Watcher) flush(now time.Time, all bool) error {
	w.mu.Lock()
	var ready []string
	for p, c := range w.pending {
		if all || now.Sub(c.last) >= w.opt.Settle || now.Sub(c.first) >= w.opt.MaxHold {
			ready = append(ready, p)
		}
	}
	for _, p := range ready {
		delete(w.pending, p)
	}
	w.mu.Unlock()
	if len(ready) == 0 {
		return nil
	}
	sort.Strings(ready)
	if err := w.opt.Sink.Add(ready); err != nil {
		// Put them back: a change is only forgotten once it is durable.
		w.mu.Lock()
		for _, p := range ready {
			if _, ok := w.pending[p]; !ok {
				w.pending[p] = &change{first: now, last: now.Add(-w.opt.Settle)}
			}
		}
		w.mu.Unlock()
		return err
	}
	return nil
}
