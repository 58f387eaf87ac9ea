package watch

// Events: the drain goroutine turns each inotify event into a recorded
// path (settle.go), a directory operation (dirs.go), an overflow or the
// end of the watch, by the <inotify> switches.

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// overflowLogEvery spaces the warnings about kernel queue overflows: a
// storm of them is reported once, with a count, not line by line.
const defaultOverflowLogEvery = 10 * time.Second

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

// stopDrainQuiet and stopDrainMax bound how long a stopping watcher keeps
// reading events the kernel already has: until none came for the first, at
// most the second.
const (
	defaultStopDrainQuiet = 50 * time.Millisecond
	defaultStopDrainMax   = 2 * time.Second
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
	quiet := time.NewTimer(w.opt.tune.stopDrainQuiet)
	defer quiet.Stop()
	deadline := time.After(w.opt.tune.stopDrainMax)
	for {
		select {
		case ev, ok := <-w.in.events:
			if !ok {
				return
			}
			if !w.handleOrReport(ev, fatal) {
				return
			}
			quiet.Reset(w.opt.tune.stopDrainQuiet)
		case <-quiet.C:
			return
		case <-deadline:
			return
		}
	}
}

// overflowed counts an overflow and reports it, once per overflowLogEvery:
// in a storm the kernel overflows again as soon as it is drained.
func (w *Watcher) overflowed(now time.Time) {
	w.statMu.Lock()
	w.overflows++
	w.overflowUnlogged++
	n := w.overflowUnlogged
	if !w.overflowLogged.IsZero() && now.Sub(w.overflowLogged) < w.opt.tune.overflowLogEvery {
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
		readSysctlInt("/proc/sys/fs/inotify/max_queued_events"), w.opt.tune.overflowLogEvery)
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
			if from.rel != "" {
				// Its old name waits for it (moves.go).
				w.noteMove(rel, from.rel, now)
			}
			// One tree change, pushed whole once its scan has watched it
			// and everything below it (trees.go).
			w.newDir(rel, now)
			if from.rel != "" && from.complete {
				w.renamedTree(rel)
			}
			return nil
		}
		// sersync's stock config turns createFile off because its
		// close-write covers a new file; but a symlink, a hard link or a
		// special file has no close-write, so a create counts whenever any
		// switch that would see the new file is on. A file renamed into
		// place is as complete as its old name was.
		kind := evCreated
		switch {
		case ev.has(unix.IN_CREATE):
			kind = evMade
		case from.complete:
			kind = evCreatedComplete
		}
		if e.CreateFile || e.CloseWrite || e.MoveTo || e.Modify {
			if from.rel != "" {
				w.recordMoved(rel, from.rel, now, kind)
			} else {
				w.record(rel, now, kind, true)
			}
		}
	case ev.has(unix.IN_DELETE | unix.IN_MOVED_FROM):
		kind := evKept
		if ev.has(unix.IN_ISDIR) || w.isDir(rel) {
			w.queueDirOp(dirOp{kind: opUnwatch, rel: rel})
			kind = evDirGone
		}
		if (ev.has(unix.IN_DELETE) && e.Delete) || (ev.has(unix.IN_MOVED_FROM) && e.MoveFrom) {
			w.record(rel, now, kind, true)
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
	// rel is the old name when the target has it to move from: not
	// excluded, and its removal propagated (moveFrom); else "" (moves.go).
	rel string
}

// pairMove notes a rename's old name and, for its new name, returns what
// was noted (zero when the old name is not in the tree, or was not seen).
func (w *Watcher) pairMove(ev event, rel string) movedFrom {
	switch {
	case ev.has(unix.IN_MOVED_FROM):
		w.mu.Lock()
		held := w.heldLocked(rel) || (ev.has(unix.IN_ISDIR) && w.heldBelowLocked(rel))
		unpushed := w.unpushedLocked(rel)
		w.mu.Unlock()
		// Not held: nothing was written to it lately.
		w.moved = movedFrom{cookie: ev.cookie, complete: !held}
		if w.opt.Events.MoveFrom && !unpushed && !w.excluded(rel, ev) {
			w.moved.rel = rel
		}
	case ev.has(unix.IN_MOVED_TO):
		m := w.moved
		w.moved = movedFrom{}
		if m.cookie == ev.cookie && ev.cookie != 0 {
			return m
		}
	}
	return movedFrom{}
}
