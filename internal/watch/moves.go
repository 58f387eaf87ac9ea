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
	"strings"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
)

// movedTo is a noted rename, by its new path.
type movedTo struct {
	from string
	at   time.Duration // when noted, from Watcher.epoch
}

// noteMove notes that rel, a directory its scan records, was renamed from
// old.
func (w *Watcher) noteMove(rel, old string, now time.Time) {
	w.mu.Lock()
	w.noteMoveLocked(rel, old, now)
	w.mu.Unlock()
}

// recordMoved records rel, renamed from old, as changed (settle.go), with
// old as its From; both under one lock, so no flush hands rel on between.
func (w *Watcher) recordMoved(rel, old string, now time.Time, ev recordKind) {
	w.mu.Lock()
	wake := w.recordLocked(rel, now, ev, true)
	w.noteMoveLocked(rel, old, now)
	w.mu.Unlock()
	w.wakeFlush(wake)
}

// noteMoveLocked notes that rel, just recorded, was renamed from old; w.mu
// held. A rename of a name that was itself renamed in and not yet handed
// on (a->b, then b->c) is noted from the first name: the target still has
// a, not b.
func (w *Watcher) noteMoveLocked(rel, old string, now time.Time) {
	if first, ok := w.moves[old]; ok {
		delete(w.moves, old)
		old = first.from
	}
	if old == rel {
		delete(w.moves, rel) // renamed back: nothing to move
		return
	}
	w.moves[rel] = movedTo{from: old, at: w.since(now)}
}

// changesLocked makes the changes handed on for ready, the paths just
// taken from pending, each with the From noted for it; w.mu held. A note
// whose path is not pending and older than MaxHold (a directory's scan
// records it well within that) was taken into another change (a tree
// above it) or dropped: it goes, so the map holds no more than the
// pending renames.
func (w *Watcher) changesLocked(ready []string, now time.Time) []change.Change {
	cs := change.Of(ready)
	if len(w.moves) == 0 {
		return cs
	}
	for i, p := range ready {
		if m, ok := w.moves[p]; ok {
			cs[i].From = m.from
			delete(w.moves, p)
		}
	}
	for p, m := range w.moves {
		if _, ok := w.pending[p]; !ok && w.since(now)-m.at > w.opt.MaxHold {
			delete(w.moves, p)
		}
	}
	return cs
}

// unpushedLocked reports whether no target can have rel yet: it was made
// since it was last handed on, or lies in a new directory not yet handed
// on; w.mu held. Renamed, it is an upload, not a move: a file written
// aside and renamed over the old name (what editors do) has nothing to
// move from on the target.
func (w *Watcher) unpushedLocked(rel string) bool {
	if _, t := w.treeAboveLocked(rel); t != nil {
		return true
	}
	c := w.pending[rel]
	return c != nil && c.made
}

// heldBelowLocked reports whether a path below the directory rel is being
// written (held, settle.go); w.mu held. One look at every pending path, at
// a directory's rename only.
func (w *Watcher) heldBelowLocked(rel string) bool {
	prefix := rel + "/"
	for p, c := range w.pending {
		if strings.HasPrefix(p, prefix) && c.written && !c.complete {
			return true
		}
	}
	for p, t := range w.trees {
		if p == rel || strings.HasPrefix(p, prefix) {
			for _, e := range t.tree.open {
				if !e.complete {
					return true
				}
			}
		}
	}
	return false
}

// renamedTree marks the pending tree rel, a directory renamed within the
// tree with nothing below its old name being written, so that what its
// scan finds is not taken for written (trees.go, foundInTree): a renamed
// directory's files are as complete as they were under the old name, and
// one of 45 MiB held the tree bigFileSettle × Settle for nothing. A scan
// that got ahead of this has noted some already: they only wait longer.
func (w *Watcher) renamedTree(rel string) {
	w.mu.Lock()
	if t := w.trees[rel]; t != nil && t.tree != nil {
		t.tree.renamed = true
	}
	w.mu.Unlock()
}

// holdForMovesLocked drops from ready the old name of each rename whose
// new path is not in ready (a directory waits for its scan): the removal
// waits for it, so that both go in one commit, and the push that has the
// removal moves the old name first (rsync/move.go) instead of deleting it
// on the target before the move; w.mu held. Not forever: a note goes
// after MaxHold (changesLocked).
func (w *Watcher) holdForMovesLocked(ready []string) []string {
	if len(w.moves) == 0 {
		return ready
	}
	in := make(map[string]bool, len(ready))
	for _, p := range ready {
		in[p] = true
	}
	held := map[string]bool{}
	for p, m := range w.moves {
		if !in[p] && in[m.from] {
			held[m.from] = true
		}
	}
	if len(held) == 0 {
		return ready
	}
	kept := ready[:0]
	for _, p := range ready {
		if !held[p] {
			kept = append(kept, p)
		}
	}
	return kept
}

// putBackMovesLocked notes again the renames of changes the sink refused;
// w.mu held.
func (w *Watcher) putBackMovesLocked(cs []change.Change, now time.Time) {
	for _, c := range cs {
		if c.From != "" {
			if _, ok := w.moves[c.Path]; !ok {
				w.moves[c.Path] = movedTo{from: c.From, at: w.since(now)}
			}
		}
	}
}
