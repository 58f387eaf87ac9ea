// Package watch turns inotify's per-directory events into settled,
// filtered, relative paths for the queue.
//
// Three goroutines keep the kernel queue from filling (beside the one that
// reads inotify, inotify.go): one only drains its events and records paths
// in memory; one adds and removes watches and
// scans new directories (which can take long); one hands paths that have
// been quiet for the settle time to the sink.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/pace"
)

// Sink receives settled paths, relative to the root. Add must make them
// durable before it returns.
type Sink interface {
	Add(paths []string) error
	// MarkMissed records, durably, that changes may have been missed and
	// why, and asks for a push of the whole tree to every target; the mark
	// stays until that push has succeeded everywhere, across restarts.
	MarkMissed(why string) error
}

// EventBuffer is the size of the channel between the inotify reader and
// the goroutine that records events; a large one rides out
// bursts while the drain goroutine is descheduled.
var EventBuffer uint = 1 << 14

// Options configures a Watcher.
type Options struct {
	Root    string
	Filter  *filter.Filter
	Events  config.Events
	Settle  time.Duration // a path is handed on once quiet this long
	MaxHold time.Duration // ... or once it has been held this long
	Sink    Sink
	Log     logrus.FieldLogger
	// OnEvent, when set, is told the kind of every event not filtered out;
	// it runs on the goroutine that drains inotify, so it must not block.
	OnEvent func(kind string)
	// DegradedFullSyncEvery: while some directories have no watch (the
	// kernel's fs.inotify.max_user_watches is reached), changes in them are
	// not seen, so the whole tree is pushed this often instead, and the
	// missing watches are tried again each time. Default 1 minute.
	DegradedFullSyncEvery time.Duration
	// Parked, when set, tells whether a path's last push failed on its own
	// and waits to be retried (the queue's Parked): a write or chmod of it
	// is recorded whatever the switches say, since it may be the fix (a
	// chmod 644 of the file rsync could not read).
	Parked func(rel string) bool
	// Heartbeat, when set, is told when the event and commit loops work
	// and wait, so systemd's watchdog can see one stuck.
	Heartbeat *heartbeat.Registry
}

// Why changes may have been missed, as the watcher tells its sink.
const (
	missedUnwatched = "some directories have no inotify watch (fs.inotify.max_user_watches reached)"
	missedOverflow  = "the inotify queue overflowed"
)

// DefaultDegradedFullSyncEvery is Options.DegradedFullSyncEvery's default.
const DefaultDegradedFullSyncEvery = time.Minute

// OverflowLogEvery spaces the warnings about kernel queue overflows: a
// storm of them is reported once, with a count, not line by line.
var OverflowLogEvery = 10 * time.Second

// Watcher watches Root recursively.
type Watcher struct {
	opt Options
	in  *inotify

	epoch        time.Time // what change and handedOn times count from
	mu           sync.Mutex
	pending      map[string]*change
	recent       map[string]handedOn // paths handed on within RecentFor
	flushAt      time.Time           // when the flush goroutine looks again by itself (zero: only when woken)
	recentPruned time.Time

	commits   pace.Stream // flush goroutine only
	moved     movedFrom   // drain goroutine only
	postponed int         // flushes put off in a row for unread events
	wake      chan struct{}

	dirMu   sync.Mutex
	dirs    map[string]struct{} // relative paths of watched directories ("" is the root)
	dirOps  []dirOp
	dirWake chan struct{}

	statMu           sync.Mutex
	overflows        int
	overflowLogged   time.Time // when an overflow was last reported
	overflowUnlogged int       // overflows since then
	resyncQueued     bool      // an opResync waits in dirOps: another adds nothing
	degraded         *WatchLimitError
	fullSyncOwed     string // why changes were missed, which the sink refused: flushLoop tells it again
}

// since is t as an offset from the watcher's epoch, monotonic like t.
func (w *Watcher) since(t time.Time) time.Duration { return t.Sub(w.epoch) }

// A file of BigFileSize or more waits at least BigFileSettle×Settle of
// quiet: a push of it costs more than rsync's fixed cost, and a writer that
// pauses between appends (a download, a dump, a copy throttled by the disk)
// would otherwise have it pushed part-written, then again, as a delta
// against the partial copy. From 1 MiB the transfer itself takes longer
// than the ~10 ms an rsync call costs. A file that is still empty after it
// was created or truncated is most likely about to be written (a download
// opens its file before the first bytes arrive), so it waits
// EmptyFileSettle×Settle.
var (
	BigFileSize     int64         = 1 << 20
	BigFileSettle   time.Duration = 10
	EmptyFileSettle time.Duration = 5
)

// sizeQuiet is the least quiet time a file of this size waits. A file
// that has content but no write event yet is most likely in the middle of
// its first write (the kernel reports a write when it ends, and the size
// grows while it runs): it waits Settle for that event, which sizes it
// again. A file moved in has no write event either; it only waits Settle.
func (w *Watcher) sizeQuiet(fi os.FileInfo, written bool) time.Duration {
	switch {
	case !fi.Mode().IsRegular():
		return 0
	case fi.Size() > 0 && !written:
		return w.opt.Settle
	case fi.Size() == 0:
		return EmptyFileSettle * w.opt.Settle
	case fi.Size() >= BigFileSize:
		return BigFileSettle * w.opt.Settle
	}
	return 0
}

// HeavyWriterSettle caps the quiet time, in multiples of Settle, that a path
// with many events waits for: a file written in hundreds of appends with
// short pauses between them is pushed once, when it is done.
var HeavyWriterSettle time.Duration = 50

// BusyCommitGap spaces commits, in multiples of Settle, while changes keep
// coming: fewer fsyncs and larger batches, for a lag that stays small.
var BusyCommitGap time.Duration = 5

// scanRecordChunk is how many paths a scan records at a time.
const scanRecordChunk = 1024

// busyPaths is the least commit size that counts towards a stream
// (pace.Stream), after which commits are BusyCommitGap×Settle apart.
const busyPaths = 4

// handedOn remembers a path handed on: when, and after how many events.
type handedOn struct {
	at     time.Duration // since Watcher.epoch
	events int
}

// RecentFor is how long a handed-on path's event count is remembered.
var RecentFor = time.Second

// shrinkMapsFrom is how many entries must have gone from a map before it
// is replaced by a smaller one.
const shrinkMapsFrom = 1024

// maxPostpone bounds how many times in a row (about a millisecond each) a
// flush waits for the event reader to catch up.
const maxPostpone = 20

// QuietDivisor sets the quiet time per event: Settle/QuietDivisor.
var QuietDivisor time.Duration = 8

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

// MaxUserWatchesPath is the sysctl that bounds inotify watches per user.
var MaxUserWatchesPath = "/proc/sys/fs/inotify/max_user_watches"

// eventKind names an event for the metrics, by its most telling operation.
func eventKind(ev event) string {
	switch {
	case ev.has(unix.IN_CREATE | unix.IN_MOVED_TO):
		return "create"
	case ev.has(unix.IN_DELETE):
		return "remove"
	case ev.has(unix.IN_MOVED_FROM):
		return "rename"
	case ev.has(unix.IN_CLOSE_WRITE):
		return "close_write"
	case ev.has(unix.IN_MODIFY):
		return "write"
	case ev.has(unix.IN_ATTRIB):
		return "chmod"
	}
	return "other"
}

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

// New creates the watcher and sets a watch on every directory of the tree;
// when it returns, every later change is seen.
func New(opt Options) (*Watcher, error) {
	if opt.Settle <= 0 {
		opt.Settle = 20 * time.Millisecond
	}
	if opt.MaxHold < opt.Settle {
		opt.MaxHold = 100 * opt.Settle
	}
	if opt.DegradedFullSyncEvery <= 0 {
		opt.DegradedFullSyncEvery = DefaultDegradedFullSyncEvery
	}
	in, err := newInotify(EventBuffer, watchMask(opt.Events.Attrib || opt.Parked != nil))
	if err != nil {
		return nil, fmt.Errorf("start inotify: %w", err)
	}
	w := &Watcher{
		opt:     opt,
		in:      in,
		epoch:   time.Now(),
		commits: pace.Stream{Window: 2 * BusyCommitGap * opt.Settle, MinBatch: busyPaths},
		pending: map[string]*change{},
		recent:  map[string]handedOn{},
		wake:    make(chan struct{}, 1),
		dirs:    map[string]struct{}{},
		dirWake: make(chan struct{}, 1),
	}
	if err := w.watchTree("", false); err != nil {
		var limit *WatchLimitError
		if !errors.As(err, &limit) {
			in.close()
			return nil, err
		}
		// Refusing to start would leave the backup without any update;
		// running with unwatched directories would miss their changes
		// silently. So run, say how to fix it, and push the whole tree
		// periodically until every directory is watched.
		w.enterDegraded(limit)
		w.requestFullSync(missedUnwatched)
	}
	return w, nil
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
// reported. With record, every entry found is recorded as changed. When the
// kernel refuses a watch (ENOSPC) the walk goes on, recording, and a
// *WatchLimitError is returned at the end.
func (w *Watcher) watchTree(rel string, record bool) error {
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
	// What the scan finds is recorded in chunks, each under one lock and one
	// time, so the flush goroutine cannot hand on a directory moved in ahead
	// of the files in it: one move is one commit, and one push.
	var found []string
	recordFound := func() {
		if len(found) > 0 {
			w.recordAll(found, time.Now(), evKept)
			found = found[:0]
		}
	}
	defer recordFound()
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
		if record && r != "" {
			if found = append(found, r); len(found) >= scanRecordChunk {
				recordFound()
			}
		}
		if !d.IsDir() {
			return nil
		}
		seen++
		if err := w.in.add(p); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				if limit == nil {
					limit = &WatchLimitError{Err: err, Limit: readSysctlInt(MaxUserWatchesPath)}
				}
				limit.Failed++
				if p == w.opt.Root {
					return nil
				}
				return nil // unwatched, but still read: what is in it now is recorded
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

// excluded is the filter's answer for an event's path. Whether it is a
// directory matters (sersync matched "dir/", rsync rules such as "+ */"
// single directories out): the kernel says so (IN_ISDIR), and a watched
// one is known.
func (w *Watcher) excluded(rel string, ev event) bool {
	if w.opt.Filter.Empty() {
		return false
	}
	return w.opt.Filter.ExcludedAs(rel, ev.has(unix.IN_ISDIR) || w.isDir(rel))
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

// Run processes events until ctx ends, then hands every recorded path to
// the sink without waiting for it to settle, and closes the watcher.
func (w *Watcher) Run(ctx context.Context) error {
	fatal := make(chan error, 1)
	stopDrain, drained := make(chan struct{}), make(chan struct{})
	stopDirs, dirsDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(drained); w.drain(stopDrain, fatal) }()
	go func() { defer close(dirsDone); w.dirWorker(stopDirs) }()
	flushErr := w.flushLoop(ctx, fatal)
	// Stop in order: read what the kernel still holds, then scan the new
	// directories that reading found, then commit everything.
	close(stopDrain)
	<-drained
	close(stopDirs)
	<-dirsDone
	w.in.close()
	if err := w.flush(time.Now(), true); err != nil && flushErr == nil {
		flushErr = err
	}
	if w.Degraded() != nil {
		// Changes in the unwatched directories since the last periodic
		// full push are unseen: the next start pushes the tree.
		w.requestFullSync(missedUnwatched)
	}
	if err := w.retryFullSync(); err != nil && flushErr == nil {
		flushErr = err
	}
	return flushErr
}

// StopDrainQuiet and StopDrainMax bound how long a stopping watcher keeps
// reading events the kernel already has: until none came for the first, at
// most the second.
var (
	StopDrainQuiet = 50 * time.Millisecond
	StopDrainMax   = 2 * time.Second
)

func (w *Watcher) drain(stop <-chan struct{}, fatal chan<- error) {
	beat := w.opt.Heartbeat.Loop("watch: inotify events")
	defer beat.Stop()
	for {
		beat.Idle()
		select {
		case <-stop:
			w.drainRest(fatal)
			return
		case ev, ok := <-w.in.events:
			beat.Busy()
			if !ok {
				return
			}
			if !w.handleOrReport(ev, fatal) {
				return
			}
		}
	}
}

// handleOrReport handles ev; a fatal error goes to fatal and ends reading.
func (w *Watcher) handleOrReport(ev event, fatal chan<- error) bool {
	err := w.handle(ev)
	if err == nil {
		return true
	}
	select {
	case fatal <- err:
	default:
	}
	return false
}

// drainRest handles the events still queued when the watcher stops, so a
// graceful stop commits every change the kernel reported before it.
func (w *Watcher) drainRest(fatal chan<- error) {
	quiet := time.NewTimer(StopDrainQuiet)
	defer quiet.Stop()
	deadline := time.After(StopDrainMax)
	for {
		select {
		case ev, ok := <-w.in.events:
			if !ok {
				return
			}
			if !w.handleOrReport(ev, fatal) {
				return
			}
			quiet.Reset(StopDrainQuiet)
		case <-quiet.C:
			return
		case <-deadline:
			return
		}
	}
}

// overflowed counts an overflow and reports it, once per OverflowLogEvery:
// in a storm the kernel overflows again as soon as it is drained.
func (w *Watcher) overflowed(now time.Time) {
	w.statMu.Lock()
	w.overflows++
	w.overflowUnlogged++
	n := w.overflowUnlogged
	if !w.overflowLogged.IsZero() && now.Sub(w.overflowLogged) < OverflowLogEvery {
		w.statMu.Unlock()
		return
	}
	w.overflowLogged, w.overflowUnlogged = now, 0
	w.statMu.Unlock()
	log := w.opt.Log
	if n > 1 {
		log = log.WithField("overflows", n)
	}
	log.Warnf("inotify queue overflowed (fs.inotify.max_queued_events=%d): changes were lost; re-watching and pushing the whole tree (reported at most every %s)",
		readSysctlInt("/proc/sys/fs/inotify/max_queued_events"), OverflowLogEvery)
}

// ErrRootGone is returned by Run when the watched directory itself was
// removed or renamed: nothing below it can be seen any more.
var ErrRootGone = errors.New("watched directory was removed or renamed")

func (w *Watcher) handle(ev event) error {
	if ev.err != nil {
		return ev.err
	}
	if ev.has(unix.IN_Q_OVERFLOW) {
		w.overflowed(time.Now())
		w.queueDirOp(dirOp{kind: opResync})
		return nil
	}
	rel, ok := w.rel(ev.name)
	if !ok {
		return nil
	}
	if ev.has(unix.IN_DELETE_SELF | unix.IN_MOVE_SELF) {
		if rel == "" {
			// Its watch is gone with it; a directory made again under the
			// name would not be watched, and pushing a missing or new root
			// could empty the backups. Stop and say so.
			return fmt.Errorf("%w: %s: changes below it can no longer be seen", ErrRootGone, w.opt.Root)
		}
		return nil // a subdirectory's own: its parent reported it by name
	}
	if rel == "" {
		return nil
	}
	// Before the filter: a file written under an excluded temporary name
	// and renamed into place is paired with its old name all the same.
	from := w.pairMove(ev, rel)
	if w.excluded(rel, ev) {
		return nil
	}
	if w.opt.OnEvent != nil {
		w.opt.OnEvent(eventKind(ev))
	}
	now := time.Now()
	e := w.opt.Events
	switch {
	case ev.has(unix.IN_CREATE | unix.IN_MOVED_TO):
		if ev.has(unix.IN_ISDIR) {
			// The scan records the directory and everything made in it
			// before its watch was set.
			w.queueDirOp(dirOp{kind: opScan, rel: rel})
			return nil
		}
		// sersync's stock config turns createFile off because its
		// close-write covers a new file; but a symlink, a hard link or a
		// special file has no close-write, so a create counts whenever any
		// switch that would see the new file is on. A file renamed into
		// place is as complete as its old name was.
		kind := evCreated
		if from.complete {
			kind = evCreatedComplete
		}
		if e.CreateFile || e.CloseWrite || e.MoveTo || e.Modify {
			w.record(rel, now, kind, true)
		}
	case ev.has(unix.IN_DELETE | unix.IN_MOVED_FROM):
		if ev.has(unix.IN_ISDIR) || w.isDir(rel) {
			w.queueDirOp(dirOp{kind: opUnwatch, rel: rel})
		}
		if (ev.has(unix.IN_DELETE) && e.Delete) || (ev.has(unix.IN_MOVED_FROM) && e.MoveFrom) {
			w.record(rel, now, evKept, true)
		}
	case ev.has(unix.IN_CLOSE_WRITE):
		// sersync's closeWrite is IN_CLOSE_WRITE. Whatever the switches, a
		// held file whose writer closed it is complete (settle.go).
		w.record(rel, now, evClosed, e.CloseWrite || e.Modify || w.parked(rel))
	case ev.has(unix.IN_MODIFY):
		// With closeWrite only, sersync waits for the close: a log or a
		// database kept open would never be pushed, nor a truncate(2) of a
		// path, which closes nothing. sersyncd counts the write too and
		// holds the file while it is written (settle.go), so nothing is
		// lost and a file closed after writing still goes at once.
		w.record(rel, now, evWritten, e.Modify || e.CloseWrite || w.parked(rel))
	case ev.has(unix.IN_ATTRIB):
		if e.Attrib || w.parked(rel) {
			w.record(rel, now, evKept, true)
		}
	}
	return nil
}

func (w *Watcher) parked(rel string) bool {
	return w.opt.Parked != nil && w.opt.Parked(rel)
}

// movedFrom is the last IN_MOVED_FROM seen, for the IN_MOVED_TO of the same
// rename (same cookie), which the kernel queues right after it.
type movedFrom struct {
	cookie   uint32
	complete bool // the old name was not being written (settle.go)
}

// pairMove notes a rename's old name and, for its new name, returns what
// was noted (zero when the old name is not in the tree, or was not seen).
func (w *Watcher) pairMove(ev event, rel string) movedFrom {
	switch {
	case ev.has(unix.IN_MOVED_FROM):
		w.mu.Lock()
		c := w.pending[rel]
		w.mu.Unlock()
		// Not held: nothing was written to it lately.
		w.moved = movedFrom{cookie: ev.cookie, complete: c == nil || c.complete}
	case ev.has(unix.IN_MOVED_TO):
		m := w.moved
		w.moved = movedFrom{}
		if m.cookie == ev.cookie && ev.cookie != 0 {
			return m
		}
	}
	return movedFrom{}
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
	err := w.watchTree("", false)
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
		err := w.watchTree(op.rel, true)
		var limit *WatchLimitError
		switch {
		case err == nil:
		case errors.As(err, &limit):
			// What the new directories hold now is recorded; later changes
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
		err := w.watchTree("", false)
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

// requestFullSync tells the sink that changes may have been missed, and
// why, which asks for a push of the whole tree; when the sink refuses (the
// queue's disk is full), flushLoop asks again until it takes it.
func (w *Watcher) requestFullSync(why string) {
	if err := w.opt.Sink.MarkMissed(why); err != nil {
		w.opt.Log.WithError(err).Error("queue full push; trying again every second")
		w.statMu.Lock()
		if w.fullSyncOwed == "" {
			w.fullSyncOwed = why
		}
		w.statMu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// retryFullSync asks again for a full sync the sink refused before.
func (w *Watcher) retryFullSync() error {
	w.statMu.Lock()
	owed := w.fullSyncOwed
	w.statMu.Unlock()
	if owed == "" {
		return nil
	}
	if err := w.opt.Sink.MarkMissed(owed); err != nil {
		return fmt.Errorf("queue full push: %w", err)
	}
	w.statMu.Lock()
	w.fullSyncOwed = ""
	w.statMu.Unlock()
	w.opt.Log.Info("full push queued")
	return nil
}

// CommitFallbackAfter: when the queue has refused changes this long (its
// disk is full), the watcher asks for one full push instead and forgets the
// changes it holds, which the full push covers; memory stays bounded and a
// batch too big for the space left cannot block everything.
var CommitFallbackAfter = 10 * time.Second

// commitRetryEvery spaces the attempts to commit while the queue refuses.
var commitRetryEvery = time.Second

func (w *Watcher) flushLoop(ctx context.Context, fatal <-chan error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var failingSince, loggedAt time.Time
	beat := w.opt.Heartbeat.Loop("watch: commit to queue")
	defer beat.Stop()
	for {
		beat.Busy()
		next, err := w.flushReady()
		if err == nil {
			err = w.retryFullSync()
		}
		now := time.Now()
		switch {
		case err != nil:
			held := w.held()
			switch {
			case failingSince.IsZero():
				failingSince, loggedAt = now, now
				w.opt.Log.WithError(err).WithField("held", held).Errorf("commit changes to queue; keeping them in memory and trying again every %s", commitRetryEvery)
			case now.Sub(loggedAt) >= 30*time.Second:
				loggedAt = now
				w.opt.Log.WithError(err).WithField("held", held).Errorf("still cannot commit changes to queue (for %s)", now.Sub(failingSince).Round(time.Second))
			}
			if now.Sub(failingSince) >= CommitFallbackAfter && held > 0 {
				w.fallBackToFullSync(held)
			}
			next = commitRetryEvery
		case !failingSince.IsZero():
			w.opt.Log.Infof("the queue accepts changes again after %s", now.Sub(failingSince).Round(time.Millisecond))
			failingSince = time.Time{}
		}
		// While paths are pending, next is at most the settle time, so a
		// fresh change never needs an earlier look than the timer gives.
		var timeout <-chan time.Time
		if next > 0 {
			timer.Reset(next)
			timeout = timer.C
		}
		wake := w.wake
		if !failingSince.IsZero() {
			wake = nil // new changes wait for the next attempt
		}
		beat.Idle()
		select {
		case <-ctx.Done():
			return nil
		case err := <-fatal:
			return err
		case <-timeout:
		case <-wake:
			if next > 0 && !timer.Stop() {
				<-timer.C
			}
		}
	}
}

// held returns how many changed paths wait in memory.
func (w *Watcher) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// fallBackToFullSync queues a full push and, once it is durable, forgets
// the paths recorded before: the full push reads the tree after they
// changed.
func (w *Watcher) fallBackToFullSync(held int) {
	before := time.Now()
	if err := w.opt.Sink.MarkMissed(fmt.Sprintf("the queue refused changes for %s", CommitFallbackAfter)); err != nil {
		return
	}
	w.statMu.Lock()
	w.fullSyncOwed = ""
	w.statMu.Unlock()
	w.mu.Lock()
	for p, c := range w.pending {
		if c.last < w.since(before) {
			delete(w.pending, p)
		}
	}
	w.mu.Unlock()
	w.opt.Log.Warnf("the queue refused %d changes for %s: a full push of the tree is queued instead", held, CommitFallbackAfter)
}

// sizeFiles looks at the size of created or written paths about to be
// handed on, once per write, so that a file still being written waits
// longer (sizeQuiet). The stat runs without the lock: the drain goroutine
// must never wait on the disk.
func (w *Watcher) sizeFiles(now time.Time) {
	var check []string
	var last []time.Duration
	var written []bool
	w.mu.Lock()
	for p, c := range w.pending {
		if c.sizeDue && !c.complete && !now.Before(w.due(c)) {
			check = append(check, p)
			last = append(last, c.last)
			written = append(written, c.written)
		}
	}
	w.mu.Unlock()
	if len(check) == 0 {
		return
	}
	quiet := make([]time.Duration, len(check))
	for i, p := range check {
		fi, err := os.Lstat(w.abs(p))
		switch {
		case err == nil:
			quiet[i] = w.sizeQuiet(fi, written[i])
		case errors.Is(err, fs.ErrNotExist):
			// Created and gone already: most likely written aside and
			// renamed into place. The new name waits Settle (a file with
			// content and no write event); the old one waits as long, so
			// both go in one commit and one push.
			quiet[i] = w.opt.Settle
		}
	}
	w.mu.Lock()
	for i, p := range check {
		// An event since the stat may have changed the size: look again.
		if c := w.pending[p]; c != nil && c.last == last[i] {
			c.sizeDue, c.minQuiet = false, quiet[i]
		}
	}
	w.mu.Unlock()
}

// flushReady hands on what has settled and returns how long until the next
// recorded path may have (0: nothing pending). What it returns is also
// noted in flushAt, under the same lock as it was worked out, so that
// record wakes the flush goroutine only when it would not look in time.
func (w *Watcher) flushReady() (time.Duration, error) {
	now := time.Now()
	// Commits are spaced at least Settle/4 apart, and BusyCommitGap×Settle
	// apart in a stream (changes keep coming), so a steady stream of
	// quickly settling files is committed (and fsynced) in batches, while
	// a lone change or the end of a short burst is never held back.
	minGap := w.opt.Settle / 4
	if w.commits.On() {
		minGap = BusyCommitGap * w.opt.Settle
	}
	if gap := minGap - now.Sub(w.commits.Last()); gap > 0 {
		w.mu.Lock()
		defer w.mu.Unlock()
		next := time.Duration(0)
		switch {
		case len(w.pending) > 0:
			next = gap
		case len(w.recent) > 0:
			next = RecentFor
		}
		return w.flushIn(now, next), nil
	}
	// Events not yet read may belong to paths that look quiet only because
	// the reader fell behind (a create and its write split into two
	// pushes): let it catch up first, for a little while.
	if len(w.in.events) > 0 && w.postponed < maxPostpone {
		w.postponed++
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.flushIn(now, time.Millisecond), nil
	}
	w.postponed = 0
	if err := w.flush(now, false); err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var next time.Duration
	for _, c := range w.pending {
		d := max(w.due(c).Sub(now), time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	if next == 0 && len(w.recent) > 0 {
		next = RecentFor // to forget them, and their memory, when idle
	}
	return w.flushIn(now, next), nil
}

// flushIn notes when the flush goroutine looks again by itself; w.mu held.
func (w *Watcher) flushIn(now time.Time, next time.Duration) time.Duration {
	w.flushAt = time.Time{}
	if next > 0 {
		w.flushAt = now.Add(next)
	}
	return next
}

func (w *Watcher) flush(now time.Time, all bool) error {
	if !all {
		w.sizeFiles(now)
	}
	w.mu.Lock()
	var ready []string
	for p, c := range w.pending {
		if all || !now.Before(w.due(c)) {
			ready = append(ready, p)
		}
	}
	for _, p := range ready {
		// A complete file handed on is done with: a later save of it
		// starts afresh (settle.go).
		if c := w.pending[p]; c.complete {
			delete(w.recent, p)
		} else {
			w.recent[p] = handedOn{at: w.since(now), events: c.events}
		}
		delete(w.pending, p)
	}
	// Go maps keep their size after deletes: after a big burst, drop the
	// emptied tables rather than hold their memory for the daemon's life.
	if len(w.pending) == 0 && len(ready) >= shrinkMapsFrom {
		w.pending = map[string]*change{}
	}
	if now.Sub(w.recentPruned) >= RecentFor {
		pruned := 0
		for p, h := range w.recent {
			if w.since(now)-h.at >= RecentFor {
				delete(w.recent, p)
				pruned++
			}
		}
		if pruned >= shrinkMapsFrom && len(w.recent) < pruned/4 {
			kept := make(map[string]handedOn, len(w.recent))
			maps.Copy(kept, w.recent) // not maps.Clone: it keeps the old size
			w.recent = kept
		}
		w.recentPruned = now
	}
	w.mu.Unlock()
	if len(ready) == 0 {
		return nil
	}
	w.commits.Note(now, len(ready))
	sort.Strings(ready)
	if err := w.opt.Sink.Add(ready); err != nil {
		// Put them back: a change is only forgotten once it is durable.
		w.mu.Lock()
		for _, p := range ready {
			if _, ok := w.pending[p]; !ok {
				w.pending[p] = &change{first: w.since(now), last: w.since(now)}
			}
		}
		w.mu.Unlock()
		return err
	}
	return nil
}
