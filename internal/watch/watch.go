// Package watch turns inotify's per-directory events into settled,
// filtered, relative paths for the queue.
//
// Three goroutines keep the kernel queue from filling, beside the one that
// reads inotify (inotify.go): one only drains its events and records paths
// in memory (events.go); one adds and removes watches and scans new
// directories, which can take long (dirs.go); one hands paths that have
// settled (settle.go) to the sink (commit.go).
package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/pace"
)

// Sink receives settled changes, relative to the root. Add must make them
// durable before it returns.
type Sink interface {
	Add(changes []change.Change) error
	// MarkMissed records, durably, that changes may have been missed and
	// why, and asks for a push of the whole tree to every target; the mark
	// stays until that push has succeeded everywhere, across restarts.
	MarkMissed(why string) error
}

// eventBuffer is the size of the channel between the inotify reader and
// the goroutine that records events; a large one rides out
// bursts while the drain goroutine is descheduled.
const defaultEventBuffer uint = 1 << 14

// Options configures a Watcher.
type Options struct {
	Root    string
	Filter  *filter.Filter
	Events  config.Events
	Settle  time.Duration // a path is handed on once quiet this long; 0: config.DefaultSettle
	MaxHold time.Duration // ... or once it has been held this long; 0: config.DefaultMaxHold
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

	tune tuning
}

// tuning holds the watcher's knobs, each declared once (as default...
// beside the code it tunes). Like syncthing's watchaggregator's caps they
// are not meant to be changed, but must be changeable for tests: a test
// sets them in the Options it passes, so tests need not share a global.
// A zero field takes its default.
type tuning struct {
	eventBuffer         uint
	bigFileSize         int64
	bigFileSettle       time.Duration // × Settle
	emptyFileSettle     time.Duration // × Settle
	heavyWriterSettle   time.Duration // × Settle
	quietDivisor        time.Duration // Settle / it per event
	busyCommitGap       time.Duration // × Settle
	recentFor           time.Duration
	commitFallbackAfter time.Duration
	overflowLogEvery    time.Duration
	stopDrainQuiet      time.Duration
	stopDrainMax        time.Duration
	maxTreeOpen         int
}

// withDefaults fills the zero fields of t.
func (t tuning) withDefaults() tuning {
	t.eventBuffer = cmp.Or(t.eventBuffer, defaultEventBuffer)
	t.bigFileSize = cmp.Or(t.bigFileSize, defaultBigFileSize)
	t.bigFileSettle = cmp.Or(t.bigFileSettle, defaultBigFileSettle)
	t.emptyFileSettle = cmp.Or(t.emptyFileSettle, defaultEmptyFileSettle)
	t.heavyWriterSettle = cmp.Or(t.heavyWriterSettle, defaultHeavyWriterSettle)
	t.quietDivisor = cmp.Or(t.quietDivisor, defaultQuietDivisor)
	t.busyCommitGap = cmp.Or(t.busyCommitGap, defaultBusyCommitGap)
	t.recentFor = cmp.Or(t.recentFor, defaultRecentFor)
	t.commitFallbackAfter = cmp.Or(t.commitFallbackAfter, defaultCommitFallbackAfter)
	t.overflowLogEvery = cmp.Or(t.overflowLogEvery, defaultOverflowLogEvery)
	t.stopDrainQuiet = cmp.Or(t.stopDrainQuiet, defaultStopDrainQuiet)
	t.stopDrainMax = cmp.Or(t.stopDrainMax, defaultStopDrainMax)
	t.maxTreeOpen = cmp.Or(t.maxTreeOpen, defaultMaxTreeOpen)
	return t
}

// Why changes may have been missed, as the watcher tells its sink.
const (
	missedUnwatched = "some directories have no inotify watch (fs.inotify.max_user_watches reached)"
	missedOverflow  = "the inotify queue overflowed"
)

// DefaultDegradedFullSyncEvery is Options.DegradedFullSyncEvery's default.
const DefaultDegradedFullSyncEvery = time.Minute

// Watcher watches Root recursively.
type Watcher struct {
	opt Options
	in  *inotify

	epoch        time.Time // what held and handedOn times count from
	mu           sync.Mutex
	pending      map[string]*held
	trees        map[string]*held    // the pending tree changes, also in pending (trees.go)
	recent       map[string]handedOn // paths handed on within recentFor
	flushAt      time.Time           // when the flush goroutine looks again by itself (zero: only when woken)
	recentPruned time.Time

	commits   pace.Stream        // flush goroutine only
	moved     movedFrom          // drain goroutine only
	moves     map[string]movedTo // new path -> old, of renames pending (moves.go); under mu
	postponed int                // flushes put off in a row for unread events
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

// New creates the watcher and sets a watch on every directory of the tree;
// when it returns, every later change is seen.
func New(opt Options) (*Watcher, error) {
	// The daemon passes the config's values; a caller that sets none gets
	// the config's defaults, and a hold never ends before the settle would.
	if opt.Settle <= 0 {
		opt.Settle = config.DefaultSettle
	}
	if opt.MaxHold <= 0 {
		opt.MaxHold = config.DefaultMaxHold
	}
	opt.MaxHold = max(opt.MaxHold, opt.Settle)
	opt.tune = opt.tune.withDefaults()
	if opt.DegradedFullSyncEvery <= 0 {
		opt.DegradedFullSyncEvery = DefaultDegradedFullSyncEvery
	}
	in, err := newInotify(opt.tune.eventBuffer, watchMask(opt.Events.Attrib || opt.Parked != nil))
	if err != nil {
		return nil, fmt.Errorf("start inotify: %w", err)
	}
	w := &Watcher{
		opt:     opt,
		in:      in,
		epoch:   time.Now(),
		commits: pace.Stream{Window: 2 * opt.tune.busyCommitGap * opt.Settle, MinBatch: busyPaths},
		pending: map[string]*held{},
		trees:   map[string]*held{},
		recent:  map[string]handedOn{},
		moves:   map[string]movedTo{},
		wake:    make(chan struct{}, 1),
		dirs:    map[string]struct{}{},
		dirWake: make(chan struct{}, 1),
	}
	if err := w.watchTree("", nil); err != nil {
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
