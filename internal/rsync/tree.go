package rsync

// The push of tree changes: a directory whose whole content is new to the
// target (made, or moved in, during the watch) goes in one recursive rsync
// with the directories as arguments, not with every path below it listed.
//
// Measured for 10,000 new 1 KiB files in 100 new directories into an empty
// daemon module on tmpfs (median of 5, CPU s of the client / the daemon):
// the list mode (--files-from of every path, --no-recursive) 0.46 / 0.43,
// --files-from of the 100 directories with -r 0.21 / 0.46, the 100
// directories as arguments with -r -R 0.10 / 0.46. Arguments it is: rsync
// reads a --files-from list, even of directories only, without its
// incremental recursion.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/pusher"
)

// treeArgBytes bounds the bytes of directory arguments of one tree push;
// more directories go in more calls. Linux allows 2 MiB of arguments and
// environment in all (ARG_MAX); this leaves the rest room.
const treeArgBytes = 256 << 10

// TreePushArgs is the argv of a recursive push of the directories dirs
// (relative to the source), each as "SOURCE/./dir" after "--": an absolute
// path, so no name is ever taken for an option, a remote host or a
// pattern; -R keeps the part after "/./" as its path on the target. What
// the filter excludes goes on stdin: anchored exclude rules, or the rsync
// rules themselves (treeExcludes). Every argument of a tree push is made
// here.
func (t *Target) TreePushArgs(dirs []string) []string {
	args := t.commonArgs()
	args = append(args,
		// A tree is new, so there is nothing on the target to compare
		// with and skipping the quick check costs nothing; when there is
		// (a directory removed and made again under its name), a file
		// rewritten at the same size within the same second must not be
		// skipped.
		"--ignore-times",
		"--recursive", "--relative")
	if t.opt.KeepDeleted {
		args = append(args, "--ignore-missing-args")
	} else {
		// A tree gone from the source is deleted on the target as a
		// missing listed path is; what the target has below a tree and
		// the source has not (its old content, when it was removed and
		// made again) goes too. Excluded paths are protected, as in a
		// full push.
		args = append(args, "--delete-missing-args", "--delete", "--force")
	}
	args = append(args, "--from0", t.filterArg(), "--")
	src := filepath.Clean(t.opt.Source)
	for _, d := range dirs {
		args = append(args, src+"/./"+d)
	}
	return append(args, t.opt.Dest+"/")
}

// filterArg is how a recursive push (full or of trees) reads its excludes
// on stdin: anchored exclude rules from a walk, or, without sersync's
// expressions, the rsync-style rules themselves, which rsync applies as
// sersyncd decided live pushes with them (Rules.NULList).
func (t *Target) filterArg() string {
	if !t.opt.Filter.HasExpressions() && !t.opt.Filter.Rules().Empty() {
		return "--filter=merge -"
	}
	return "--exclude-from=-"
}

// treeExcludes is what a tree push of dirs reads on stdin: with sersync's
// expressions, every path below dirs that they exclude, as an anchored
// rule (a walk of the new trees only); else the rsync rules, if any. An
// excluded file made between the walk and rsync's read of its directory
// would be pushed: the window is the few milliseconds of one push, for a
// directory that did not exist a moment before.
func (t *Target) treeExcludes(ctx context.Context, dirs []string) (*bytes.Buffer, error) {
	if !t.opt.Filter.HasExpressions() {
		return bytes.NewBuffer(t.opt.Filter.Rules().NULList()), nil
	}
	all := &bytes.Buffer{}
	for _, d := range dirs {
		w, err := t.walk(ctx, d, false, false, 0)
		if err != nil {
			return nil, err
		}
		all.Write(w.excluded.Bytes())
	}
	return all, nil
}

// pushTrees pushes each of dirs recursively, in as few rsync calls as the
// argument bytes allow.
func (t *Target) pushTrees(ctx context.Context, dirs []string) error {
	for _, chunk := range argChunks(len(filepath.Clean(t.opt.Source))+len("/./"), dirs, treeArgBytes) {
		stdin, err := t.treeExcludes(ctx, chunk)
		if err != nil {
			return err
		}
		if err := t.run(ctx, t.TreePushArgs(chunk), stdin); err != nil {
			return fmt.Errorf("push %d new directories: %w", len(chunk), err)
		}
	}
	return nil
}

// argChunks splits dirs into runs whose arguments (prefix bytes before
// each, and its NUL) take at most limit bytes; one longer than limit goes
// alone.
func argChunks(prefix int, dirs []string, limit int) [][]string {
	var chunks [][]string
	for len(dirs) > 0 {
		n, size := 0, 0
		for n < len(dirs) && (n == 0 || size+prefix+len(dirs[n])+1 <= limit) {
			size += prefix + len(dirs[n]) + 1
			n++
		}
		chunks = append(chunks, dirs[:n])
		dirs = dirs[n:]
	}
	return chunks
}

// treeListMax: the trees of a batch are listed path by path in its list
// push, instead of pushed by a recursive call of their own, when all of
// them are fresh (change.Change) and hold this many entries or fewer in
// all. The list mode costs rsync about 57 µs of client CPU more per path
// than a recursive walk (issue 11: 0.75 s against 0.18 s for 10,000), so
// 100 paths cost under 6 ms; a call of its own costs ~10 ms of CPU on each
// side and 25 to 45 ms before the target is equal (a fresh rsync, where the
// list push has one waiting: standby.go). The mixed workload's new and
// renamed small directories had a call of their own in every batch.
const treeListMax = 100

// pushChanges pushes the plain changes in one list push and the trees
// recursively, or small fresh trees listed with the plain changes
// (treeListMax). A path at or below a tree of the same batch is left to
// the tree's push, which reads it as it is now (and, with --delete,
// removes it when gone). When the list push fails other than partially
// the target is not reached, and the trees are not tried.
func (t *Target) pushChanges(ctx context.Context, changes []change.Change) error {
	trees, paths := t.split(changes)
	if listed, ok := t.listTrees(ctx, trees, changes); ok {
		trees, paths = nil, append(paths, listed...)
	}
	var err error
	if len(paths) > 0 {
		err = t.push(ctx, paths)
	}
	if len(trees) > 0 && (err == nil || partial(err)) {
		err = joinPushErrors(err, t.pushTrees(ctx, trees))
	}
	return err
}

// split maps the changes below a type change to their ancestor
// (typechange.go) and returns the trees (none below another) and the
// plain paths not at or below a tree.
func (t *Target) split(changes []change.Change) (trees, paths []string) {
	mapped := underTypeChanges(t.opt.Source, changes)
	isTree := map[string]bool{}
	for _, c := range mapped {
		if c.Tree {
			trees = append(trees, c.Path)
			isTree[c.Path] = true
		}
	}
	// Parents sort before their children ("a" < "a/b"), and a tree kept
	// is never below another.
	sort.Strings(trees)
	kept := trees[:0]
	for _, d := range trees {
		if !belowTree(d, isTree, false) {
			kept = append(kept, d)
		}
	}
	for _, c := range mapped {
		if !c.Tree && !belowTree(c.Path, isTree, true) {
			paths = append(paths, c.Path)
		}
	}
	return kept, paths
}

// listTrees returns every path at and below trees (relative, under the
// filter) when each of them is a fresh tree among changes and they hold
// treeListMax entries or fewer in all; ok is false otherwise, after
// looking no further than it must. A tree that is not fresh may have old
// content below it on the target, which only a recursive push with
// --delete removes.
func (t *Target) listTrees(ctx context.Context, trees []string, changes []change.Change) (paths []string, ok bool) {
	if len(trees) == 0 {
		return nil, false
	}
	fresh := map[string]bool{}
	for _, c := range changes {
		if c.Tree && c.Fresh {
			fresh[c.Path] = true
		}
	}
	entries := 0 // below the trees
	for _, d := range trees {
		if !fresh[d] {
			return nil, false
		}
		// d itself is in what the walk wants, and may be one more.
		w, err := t.walk(ctx, d, false, true, treeListMax-entries+1)
		if err != nil || len(w.unreadable) > 0 {
			// Unreadable: listed, it would be pushed without what it
			// holds and the push would succeed; the recursive push fails
			// on it, and the pool keeps it and says so.
			return nil, false
		}
		// The tree itself is listed even when gone: a push of it that
		// failed part way may have left some of it on the target, which
		// the list push then deletes (--delete-missing-args).
		paths = append(paths, d)
		for _, p := range w.wanted {
			if p != d {
				paths = append(paths, p)
				entries++
			}
		}
		if entries > treeListMax {
			return nil, false
		}
	}
	return paths, true
}

// belowTree reports whether p is below one of trees (or one of them, with
// self).
func belowTree(p string, trees map[string]bool, self bool) bool {
	if len(trees) == 0 {
		return false
	}
	if self && trees[p] {
		return true
	}
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' && trees[p[:i]] {
			return true
		}
	}
	return false
}

// partial reports whether a push failed only partially (the exit-code
// table's Partial): the target was reached and took the rest.
func partial(err error) bool {
	var e *ExitError
	return errors.As(err, &e) && e.outcome() == pusher.Partial
}

// joinPushErrors is both failures of one push, the one that tells the pool
// more first (pushError reads the first exit code it finds): a partial
// failure is only isolated by halving when nothing worse happened.
func joinPushErrors(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case partial(a) && !partial(b):
		a, b = b, a
	}
	return fmt.Errorf("%w; %w", a, b)
}
