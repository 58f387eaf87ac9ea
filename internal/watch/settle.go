package watch

import (
	"errors"
	"io/fs"
	"os"
	"time"
)

// The settle policy: when a recorded path is handed on.
//
// A file whose last event is its writer's close (IN_CLOSE_WRITE) is
// complete: it is handed on once quiet for Settle/4, the least any path
// waits (a create and the write after it can be milliseconds apart on a
// busy machine), however often it was saved before and whatever its size.
// Before this rule a path changed again within recentFor of being handed
// on counted its events twice over, so a file saved whole every second
// waited longer after each save, up to 50 × Settle (1 s), and stayed there
// (issue 11: median 1.03 s per save, lsyncd 0.21 s). Nothing but a close
// after write tells a file saved again from one written in pieces.
//
// A file still being written (its last event a write: a 500 MiB copy, a
// download, a log written in pieces through one descriptor) is held as
// before: Settle/quietDivisor of quiet per event seen, counting again the
// events of a recent hand-on (recentFor) whose writer had not closed it,
// capped at heavyWriterSettle × Settle, and at least what its size says
// (sizeQuiet); never longer than MaxHold after its first event.
//
// A second writer that still holds the file open but has not written
// since the first one closed it is not seen: inotify reports opens
// without their mode, and counting IN_OPEN/IN_CLOSE_NOWRITE would double
// the events of every push (rsync reads each file it sends). Its next
// write holds the file again, and its close pushes it once more, so
// nothing is lost.

// Times in held and handedOn are offsets from Watcher.epoch (since): a
// time.Time is 24 bytes, and a burst holds a hundred thousand of these.
type held struct {
	first, last time.Duration
	events      int
	tree        *treeState    // non-nil: a new directory, pushed whole (trees.go)
	sizeDue     bool          // created or written since it was last sized
	written     bool          // a write event was seen
	complete    bool          // its last write was closed (see above)
	minQuiet    time.Duration // what its size says about the writer (sizeQuiet)
	// made: its hold began with its creation, so no push has carried it
	// yet and no target has it: renamed, it is no move's old name (moves.go).
	made bool
	// dirGone: a directory of this name was removed or renamed away while
	// it was held, so a target may still have content below the name: a
	// directory made again under it is no fresh tree (trees.go).
	dirGone bool
}

// due is when a change is handed on.
func (w *Watcher) due(c *held) time.Time {
	if c.tree != nil {
		return w.treeDue(c)
	}
	quiet := w.opt.Settle / 4
	if !c.complete {
		quiet = time.Duration(c.events) * w.opt.Settle / w.opt.tune.quietDivisor
		quiet = min(max(quiet, w.opt.Settle/4), w.opt.tune.heavyWriterSettle*w.opt.Settle)
		quiet = max(quiet, c.minQuiet)
	}
	return w.epoch.Add(min(c.last+quiet, c.first+w.opt.MaxHold))
}

// recordKind is how an event bears on a path's hold.
type recordKind int

const (
	evKept            recordKind = iota // removed, renamed away, chmod, found by a scan
	evDirGone                           // a directory removed or renamed away
	evCreated                           // created or moved in: size it
	evMade                              // created (IN_CREATE): as evCreated, and never on a target yet
	evCreatedComplete                   // renamed into place from a name not being written
	evWritten                           // written to: a writer is at work
	evClosed                            // its writer closed it after writing
)

// record notes an event for rel. With push false, the event only bears on
// the hold of a path already recorded (a write or close that the
// switches do not count as a change of its own).
func (w *Watcher) record(rel string, now time.Time, ev recordKind, push bool) {
	w.mu.Lock()
	wake := w.recordLocked(rel, now, ev, push)
	w.mu.Unlock()
	w.wakeFlush(wake)
}

func (w *Watcher) wakeFlush(wake bool) {
	if wake {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// note moves c's last event to at and applies what ev says of its writer.
func (c *held) note(at time.Duration, ev recordKind) {
	c.last = at
	switch ev {
	case evCreated, evMade:
		c.sizeDue, c.complete = true, false
	case evCreatedComplete:
		c.complete = true
	case evWritten:
		c.sizeDue, c.written, c.complete = true, true, false
	case evClosed:
		c.written, c.complete = true, true
	case evDirGone:
		c.dirGone = true
	}
}

// recordLocked records rel and says whether the flush goroutine must be
// woken; w.mu held. An event below a new directory not yet handed on is
// absorbed into it (trees.go), whatever the switches say.
func (w *Watcher) recordLocked(rel string, now time.Time, ev recordKind, push bool) bool {
	if root, t := w.treeAboveLocked(rel); t != nil {
		w.absorbLocked(t, root, rel, w.since(now), ev)
		return false
	}
	c := w.pending[rel]
	if c == nil && !push {
		return false
	}
	at := w.since(now)
	fresh, wasComplete := c == nil, c != nil && c.complete
	if fresh {
		events := 1
		// A path handed on a moment ago, while its writer still had it
		// open, and changing again is being written in pieces: its count
		// doubles, so each time it waits twice as long for quiet.
		if h, ok := w.recent[rel]; ok && at-h.at < w.opt.tune.recentFor {
			events += 2 * h.events
		}
		c = &held{first: at, events: events, made: ev == evMade}
		w.pending[rel] = c
	} else {
		c.events++
	}
	c.note(at, ev)
	// A new path is due Settle/4 from now at the earliest, a known one no
	// sooner than before unless its writer just closed it: when the flush
	// goroutine looks by then anyway, waking it costs a thousand context
	// switches a second under a steady stream of changes and gains nothing.
	sooner := fresh || (c.complete && !wasComplete)
	return w.flushAt.IsZero() || (sooner && w.flushAt.After(now.Add(w.opt.Settle/4)))
}

// A file of bigFileSize or more waits at least bigFileSettle×Settle of
// quiet: a push of it costs more than rsync's fixed cost, and a writer that
// pauses between appends (a download, a dump, a copy throttled by the disk)
// would otherwise have it pushed part-written, then again, as a delta
// against the partial copy. From 1 MiB the transfer itself takes longer
// than the ~10 ms an rsync call costs. A file that is still empty after it
// was created or truncated is most likely about to be written (a download
// opens its file before the first bytes arrive), so it waits
// emptyFileSettle×Settle.
const (
	defaultBigFileSize     int64         = 1 << 20
	defaultBigFileSettle   time.Duration = 10
	defaultEmptyFileSettle time.Duration = 5
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
		return w.opt.tune.emptyFileSettle * w.opt.Settle
	case fi.Size() >= w.opt.tune.bigFileSize:
		return w.opt.tune.bigFileSettle * w.opt.Settle
	}
	return 0
}

// heavyWriterSettle caps the quiet time, in multiples of Settle, that a path
// with many events waits for: a file written in hundreds of appends with
// short pauses between them is pushed once, when it is done.
const defaultHeavyWriterSettle time.Duration = 50

// handedOn remembers a path handed on: when, and after how many events.
type handedOn struct {
	at     time.Duration // since Watcher.epoch
	events int
}

// recentFor is how long a handed-on path's event count is remembered.
const defaultRecentFor = time.Second

// quietDivisor sets the quiet time per event: Settle/quietDivisor.
const defaultQuietDivisor time.Duration = 8

// sizeFiles looks at the size of created or written paths about to be
// handed on, once per write, so that a file still being written waits
// longer (sizeQuiet); the entries of pending trees being written too
// (trees.go). The stat runs without the lock: the drain goroutine must
// never wait on the disk.
func (w *Watcher) sizeFiles(now time.Time) {
	type sizing struct {
		p       string
		c       *held
		last    time.Duration
		written bool
		quiet   time.Duration
		settled bool // not a regular file: nothing more to wait for
	}
	var check []sizing
	add := func(p string, c *held) {
		check = append(check, sizing{p: p, c: c, last: c.last, written: c.written})
	}
	w.mu.Lock()
	for p, c := range w.pending {
		if c.tree == nil && c.sizeDue && !c.complete && !now.Before(w.due(c)) {
			add(p, c)
		}
	}
	w.treeEntriesToSize(now, add)
	w.mu.Unlock()
	if len(check) == 0 {
		return
	}
	for i := range check {
		s := &check[i]
		fi, err := os.Lstat(w.abs(s.p))
		switch {
		case err == nil:
			s.quiet = w.sizeQuiet(fi, s.written)
			s.settled = !fi.Mode().IsRegular()
		case errors.Is(err, fs.ErrNotExist):
			// Created and gone already: most likely written aside and
			// renamed into place. The new name waits Settle (a file with
			// content and no write event); the old one waits as long, so
			// both go in one commit and one push.
			s.quiet = w.opt.Settle
		}
	}
	w.mu.Lock()
	for _, s := range check {
		// An event since the stat may have changed the size: look again.
		// A change handed on (or closed) meanwhile is no longer in any map,
		// and what is set on it here is dropped with it.
		if s.c.last == s.last {
			s.c.sizeDue, s.c.minQuiet = false, s.quiet
			if s.settled {
				// A symlink, a device, a directory made below a tree: no
				// writer to wait for, and no room to take in its tree.
				if _, t := w.treeAboveLocked(s.p); t != nil && t.tree.open[s.p] == s.c {
					delete(t.tree.open, s.p)
				}
			}
		}
	}
	w.mu.Unlock()
}
