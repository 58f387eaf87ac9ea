package watch

// Renames within the tree: the new path is handed on with the old one as
// its From (change.Change), so a push can rename it on the target instead
// of sending it again (rsync/move.go). The two halves of a rename are
// paired by the kernel's cookie (pairMove, events.go); a rename whose other
// half is outside the tree, or whose old name is excluded (never pushed,
// so what the target has there is its own), or that sersync's moveFrom
// switch would not propagate (the target keeps the old name), has no From:
// the new path is an upload, the old one a removal, as before.

import (
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
)

// recordMoved records rel, renamed from old, as changed (settle.go), with
// old as its From; both under one lock, so no flush hands rel on between.
func (w *Watcher) recordMoved(rel, old string, now time.Time, ev recordKind) {
	w.mu.Lock()
	wake := w.recordLocked(rel, now, ev, true)
	w.noteMoveLocked(rel, old)
	w.mu.Unlock()
	w.wakeFlush(wake)
}

// noteMoveLocked notes that rel, just recorded, was renamed from old; w.mu
// held. A rename of a name that was itself renamed in and not yet handed
// on (a->b, then b->c) is noted from the first name: the target still has
// a, not b.
func (w *Watcher) noteMoveLocked(rel, old string) {
	if first, ok := w.moves[old]; ok {
		delete(w.moves, old)
		old = first
	}
	if old == rel {
		delete(w.moves, rel) // renamed back: nothing to move
		return
	}
	w.moves[rel] = old
}

// changesLocked makes the changes handed on for ready, the paths just
// taken from pending, each with the From noted for it; w.mu held. A noted
// rename whose path is no longer pending was taken into another change
// (a tree above it) or dropped: its note goes with it, so the map holds no
// more than the pending renames.
func (w *Watcher) changesLocked(ready []string) []change.Change {
	cs := change.Of(ready)
	if len(w.moves) == 0 {
		return cs
	}
	for i, p := range ready {
		if from, ok := w.moves[p]; ok {
			cs[i].From = from
			delete(w.moves, p)
		}
	}
	for p := range w.moves {
		if _, ok := w.pending[p]; !ok {
			delete(w.moves, p)
		}
	}
	return cs
}

// putBackMovesLocked notes again the renames of changes the sink refused;
// w.mu held.
func (w *Watcher) putBackMovesLocked(cs []change.Change) {
	for _, c := range cs {
		if c.From != "" {
			if _, ok := w.moves[c.Path]; !ok {
				w.moves[c.Path] = c.From
			}
		}
	}
}
