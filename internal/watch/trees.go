package watch

// New directories: a directory made, or moved in, during the watch is
// handed on as one tree change (pushed recursively, rsync/tree.go), not as
// each of its entries. For 10,000 new files in 100 new directories rsync's
// list mode (--files-from of every path) costs 0.46 CPU s on the client,
// a recursive push of the 100 directories 0.10 s (issue 11); and the queue
// holds 100 records instead of 10,100.
//
// While a tree change is pending, an event below it is absorbed: it only
// moves the tree's last event, and a file written and not yet closed
// holds the tree by the settle rules of a file (settle.go), so a 500 MiB
// copy into a new directory is still pushed once, whole. A new directory
// below a pending tree is part of it (the topmost pending tree takes it).
// A deletion below it needs nothing: the push reads the directory as it is
// then. The tree's own removal or rename is absorbed too: the push of a
// tree that is gone deletes it on the target (--delete-missing-args), as
// for any path. Once handed on, a tree is done with: later events below it
// are ordinary per-path changes.
//
// A tree is never handed on before its directories are watched (its scan,
// dirs.go, is done): an entry made before its directory's watch is set
// makes no event, and only a push that reads the directory after the watch
// was set is sure to carry it.

import "time"

// treeState is what a pending tree tracks beyond a plain change.
type treeState struct {
	scans int              // scans of directories in it still to do: not due before they are
	open  map[string]*held // entries below it written or made and not yet closed, by path
	// untracked: more entries were open at once than maxTreeOpen; it
	// waits by its event count, as a file still being written does.
	untracked bool
	// renamed: renamed within the tree, with nothing below its old name
	// being written: what its scan finds is complete (moves.go).
	renamed bool
	// fresh: no directory of its name was removed or renamed away while
	// it was held (change.Change's Fresh).
	fresh bool
}

// maxTreeOpen bounds the entries of one pending tree whose writer is
// tracked (a file stays tracked from its create or write until its close).
// A burst of files each written whole tracks a handful at a time; an
// untar or a cp -a of a big tree into a new directory closes each file
// before the next. Beyond it the tree is held like one file still being
// written, by its event count (at most heavyWriterSettle × Settle, and
// MaxHold).
const defaultMaxTreeOpen = 4096

// treeAboveLocked returns the topmost pending tree that is rel or an
// ancestor of rel, and its path; w.mu held.
func (w *Watcher) treeAboveLocked(rel string) (string, *held) {
	if len(w.trees) == 0 {
		return "", nil
	}
	for i := 1; i <= len(rel); i++ { // "" (the root) is never a tree
		if i < len(rel) && rel[i] != '/' {
			continue
		}
		if c := w.trees[rel[:i]]; c != nil {
			return rel[:i], c
		}
	}
	return "", nil
}

// newDir records rel, a directory made or moved in, as a tree change (or
// as part of the pending tree above it), and queues the scan that watches
// it and every directory below it.
func (w *Watcher) newDir(rel string, now time.Time) {
	at := w.since(now)
	w.mu.Lock()
	_, t := w.treeAboveLocked(rel)
	if t == nil {
		t = w.pending[rel]
		// Fresh unless a directory of the name went while it was held
		// (a tree made, removed and made again is as fresh as it was).
		fresh := t == nil || (t.tree == nil && !t.dirGone) || (t.tree != nil && t.tree.fresh)
		if t == nil {
			t = &held{first: at}
			w.pending[rel] = t
		}
		// A path recorded before (a file removed, a directory made again
		// under the same name) becomes a tree: its push covers both.
		t.tree = &treeState{fresh: fresh}
		w.trees[rel] = t
	}
	t.events++
	t.last = at
	t.tree.scans++
	w.mu.Unlock()
	w.queueDirOp(dirOp{kind: opScan, rel: rel, tree: t})
}

// foundInTree notes the files a scan of tree t found: made before their
// directory's watch was set, so no event told of them, and any may still be
// written. Each is held by what its size says, as a file written is
// (sizeQuiet): a big one bigFileSettle × Settle, an empty one
// emptyFileSettle × Settle; a write seen since the scan holds it further,
// its close releases it. Taken for written, as it may well have been out
// of sight: a file with content and no write event would only wait Settle
// for an event that came before the watch. They add no events to the
// tree's count.
func (w *Watcher) foundInTree(t *held, rels []string, now time.Time) {
	at := w.since(now)
	w.mu.Lock()
	if !t.tree.renamed {
		for _, rel := range rels {
			w.trackLocked(t.tree, rel, at, evWritten)
		}
	}
	t.last = max(t.last, at)
	w.mu.Unlock()
}

// scanned notes that one scan of a directory of tree t is done.
func (w *Watcher) scanned(t *held) {
	w.mu.Lock()
	t.tree.scans--
	wake := t.tree.scans == 0
	w.mu.Unlock()
	w.wakeFlush(wake)
}

// absorbLocked notes an event of rel, at or below the pending tree t at
// root; it says whether the flush goroutine must be woken (an entry whose
// writer closed it may make the tree due sooner); w.mu held.
func (w *Watcher) absorbLocked(t *held, root, rel string, at time.Duration, ev recordKind) bool {
	t.events++
	t.last = at
	if rel == root {
		return false
	}
	return w.trackLocked(t.tree, rel, at, ev)
}

// trackLocked applies ev to the entry rel of a pending tree; it says
// whether the entry's writer closed it; w.mu held.
func (w *Watcher) trackLocked(ts *treeState, rel string, at time.Duration, ev recordKind) bool {
	e := ts.open[rel]
	switch ev {
	case evCreated, evMade, evWritten:
		if e == nil {
			if len(ts.open) >= w.opt.tune.maxTreeOpen {
				ts.untracked = true
				return false
			}
			if ts.open == nil {
				ts.open = map[string]*held{}
			}
			e = &held{first: at}
			ts.open[rel] = e
		}
		e.events++
		e.note(at, ev)
	case evClosed, evCreatedComplete:
		if e != nil {
			delete(ts.open, rel)
			return true
		}
	default:
		if e != nil {
			e.events++
			e.last = at
		}
	}
	return false
}

// treeDue is when the tree change c is handed on: once its scans are done,
// after Settle/4 of quiet, and no sooner than each entry still being
// written would be (settle.go); never later than MaxHold after its first
// event.
func (w *Watcher) treeDue(c *held) time.Time {
	if c.tree.scans > 0 {
		// The end of the scan wakes the flush goroutine (scanned).
		return w.epoch.Add(c.last + 365*24*time.Hour)
	}
	due := c.last + w.opt.Settle/4
	if c.tree.untracked {
		quiet := time.Duration(c.events) * w.opt.Settle / w.opt.tune.quietDivisor
		due = c.last + min(max(quiet, w.opt.Settle/4), w.opt.tune.heavyWriterSettle*w.opt.Settle)
	}
	for _, e := range c.tree.open {
		due = max(due, w.due(e).Sub(w.epoch))
	}
	return w.epoch.Add(min(due, c.first+w.opt.MaxHold))
}

// heldLocked reports whether rel, recorded or absorbed into a pending
// tree, is held as a file still being written; w.mu held.
func (w *Watcher) heldLocked(rel string) bool {
	if _, t := w.treeAboveLocked(rel); t != nil {
		e := t.tree.open[rel]
		return e != nil && !e.complete
	}
	c := w.pending[rel]
	return c != nil && !c.complete
}

// forgetTreeLocked drops p from the pending trees, if it is one; w.mu held.
func (w *Watcher) forgetTreeLocked(p string, c *held) {
	if c.tree != nil && w.trees[p] == c {
		delete(w.trees, p)
	}
}

// treeEntriesToSize returns, for each pending tree, the entries whose size
// is due (see sizeFiles); w.mu held.
func (w *Watcher) treeEntriesToSize(now time.Time, add func(p string, c *held)) {
	for _, t := range w.trees {
		for rel, e := range t.tree.open {
			if e.sizeDue && !e.complete && !now.Before(w.due(e)) {
				add(rel, e)
			}
		}
	}
}
