// Package change is the vocabulary the stages share: a path to push, and
// how. The watcher makes changes, the queue keeps them, the pool hands them
// to a target; none of them needs to know the others for it.
package change

// Change is one path to push, relative to its tree's root, and how.
type Change struct {
	Path string
	// Tree: push Path and everything below it, recursively. Set for a
	// directory whose whole content is new to the target (made, or moved
	// in, during the watch), so that its files are not listed one by one:
	// a list costs rsync about four times a recursive walk (issue 11).
	Tree bool
	// Fresh: with Tree, no target has anything below Path yet as far as
	// the watcher knows (no directory of that name was removed or renamed
	// away while it waited), so a push may list a small tree's paths
	// instead of pushing it recursively with --delete (rsync/tree.go).
	// Never set when in doubt: a tree not fresh is always pushed whole.
	Fresh bool
	// From: Path was renamed from From within the same tree. It is a hint:
	// a push may first move From to Path on the target, and must leave the
	// target equal to the source all the same when the hint is stale.
	// From's own change (its removal) is a change of its own.
	From string
}

// Of makes plain changes of paths.
func Of(paths []string) []Change {
	cs := make([]Change, len(paths))
	for i, p := range paths {
		cs[i] = Change{Path: p}
	}
	return cs
}

// Paths returns the paths of changes.
func Paths(cs []Change) []string {
	ps := make([]string, len(cs))
	for i, c := range cs {
		ps[i] = c.Path
	}
	return ps
}

// Merge is what a path owes when it changed as a, then as b before a was
// pushed: a tree push covers a plain one, and the latest rename hint wins.
// A merged change is never Fresh: what the first one left on a target,
// if its push ran, is not known.
func Merge(a, b Change) Change {
	m := Change{Path: b.Path, Tree: a.Tree || b.Tree, From: a.From}
	if b.From != "" {
		m.From = b.From
	}
	return m
}
