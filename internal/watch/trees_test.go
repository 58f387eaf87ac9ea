package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// ruleWatcher is a Watcher without inotify, for the tree rules alone:
// events are fed to it by hand at chosen times.
func ruleWatcher(t *testing.T, tune tuning) (*Watcher, *sink) {
	s := newSink()
	log, _ := newLogger()
	w := &Watcher{
		opt:     Options{Root: t.TempDir(), Settle: 20 * time.Millisecond, MaxHold: time.Second, Sink: s, Log: log, tune: tune.withDefaults()},
		epoch:   time.Now(),
		pending: map[string]*held{},
		trees:   map[string]*held{},
		recent:  map[string]handedOn{},
		wake:    make(chan struct{}, 1),
		dirs:    map[string]struct{}{},
		dirWake: make(chan struct{}, 1),
	}
	return w, s
}

// scanAll ends every queued scan as the directory goroutine would, without
// watching anything.
func scanAll(w *Watcher) {
	w.dirMu.Lock()
	ops := w.dirOps
	w.dirOps = nil
	w.dirMu.Unlock()
	for _, op := range ops {
		if op.kind == opScan && op.tree != nil {
			w.scanned(op.tree)
		}
	}
}

func (w *Watcher) pendingPaths() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ps []string
	for p, c := range w.pending {
		if c.tree != nil {
			p += " (tree)"
		}
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// dueIn is when the pending change of p is due, from the epoch.
func (w *Watcher) dueIn(t *testing.T, p string) time.Duration {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.pending[p]
	if c == nil {
		t.Fatalf("%q is not pending: %v", p, w.pending)
	}
	return w.due(c).Sub(w.epoch)
}

// The rules of a new directory's tree change, one event at a time (Settle
// 20 ms, MaxHold 1 s): what is pending, and when it is due.
func TestTreeRules(t *testing.T) {
	const ms = time.Millisecond
	type step func(w *Watcher, at func(int) time.Time)
	mkdir := func(rel string, t int) step {
		return func(w *Watcher, at func(int) time.Time) { w.newDir(rel, at(t)) }
	}
	ev := func(rel string, t int, kind recordKind, push bool) step {
		return func(w *Watcher, at func(int) time.Time) { w.record(rel, at(t), kind, push) }
	}
	scan := func(w *Watcher, _ func(int) time.Time) { scanAll(w) }
	// writeFile writes size bytes at rel now: sizeFiles reads what is there.
	writeFile := func(rel string, size int) step {
		return func(w *Watcher, _ func(int) time.Time) {
			p := w.abs(rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				panic(err)
			}
			if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
				panic(err)
			}
		}
	}
	sizeAt := func(t int) step {
		return func(w *Watcher, at func(int) time.Time) { w.sizeFiles(at(t)) }
	}
	cases := []struct {
		name    string
		tune    tuning
		steps   []step
		pending []string
		due     time.Duration // of the first pending path; -1: not before its scan
	}{
		{
			name:    "files written whole in a new directory: one tree, Settle/4 after the last",
			steps:   []step{mkdir("d", 0), scan, ev("d/f1", 1, evCreated, true), ev("d/f1", 2, evWritten, true), ev("d/f1", 3, evClosed, true), ev("d/f2", 4, evCreated, true), ev("d/f2", 5, evClosed, true)},
			pending: []string{"d (tree)"},
			due:     5*ms + 5*ms,
		},
		{
			name:    "not due before its scan, however quiet",
			steps:   []step{mkdir("d", 0), ev("d/f", 1, evClosed, true)},
			pending: []string{"d (tree)"},
			due:     -1,
		},
		{
			name:    "a nested new directory joins the topmost tree, which waits for both scans",
			steps:   []step{mkdir("a", 0), mkdir("a/b", 1), mkdir("a/b/c", 2), ev("a/b/c/f", 3, evClosed, true)},
			pending: []string{"a (tree)"},
			due:     -1,
		},
		{
			name:    "a nested new directory, scans done",
			steps:   []step{mkdir("a", 0), mkdir("a/b", 1), scan, ev("a/b/f", 3, evClosed, true)},
			pending: []string{"a (tree)"},
			due:     3*ms + 5*ms,
		},
		{
			name: "a file still being written holds it as a file is held",
			// 16 events of the file: 16 × Settle/8 = 40 ms of quiet.
			steps: func() []step {
				s := []step{mkdir("d", 0), scan, ev("d/log", 1, evCreated, true)}
				for i := 2; i <= 16; i++ {
					s = append(s, ev("d/log", i, evWritten, false))
				}
				return append(s, ev("d/other", 17, evClosed, true))
			}(),
			pending: []string{"d (tree)"},
			due:     16*ms + 40*ms,
		},
		{
			name:    "its writer's close releases it",
			steps:   []step{mkdir("d", 0), scan, ev("d/log", 1, evCreated, true), ev("d/log", 2, evWritten, false), ev("d/log", 3, evWritten, false), ev("d/log", 4, evClosed, false)},
			pending: []string{"d (tree)"},
			due:     4*ms + 5*ms,
		},
		{
			name:    "a big file being written holds it bigFileSettle × Settle (200 ms)",
			tune:    tuning{bigFileSize: 4096},
			steps:   []step{mkdir("d", 0), scan, writeFile("d/big", 4096), ev("d/big", 1, evCreated, true), ev("d/big", 2, evWritten, false), sizeAt(50)},
			pending: []string{"d (tree)"},
			due:     2*ms + 200*ms,
		},
		{
			name:    "a symlink made below it does not hold it",
			steps:   []step{mkdir("d", 0), scan, writeFile("d/f", 1), func(w *Watcher, _ func(int) time.Time) { _ = os.Symlink("x", w.abs("d/link")) }, ev("d/link", 1, evCreated, true), sizeAt(50)},
			pending: []string{"d (tree)"},
			due:     1*ms + 5*ms,
		},
		{
			name: "MaxHold ends the hold of a tree still being written",
			steps: func() []step {
				s := []step{mkdir("d", 0), scan}
				for i := 1; i <= 2000; i += 10 {
					s = append(s, ev("d/log", i, evWritten, true))
				}
				return s
			}(),
			pending: []string{"d (tree)"},
			due:     time.Second,
		},
		{
			name: "beyond maxTreeOpen open entries it waits by its event count",
			tune: tuning{maxTreeOpen: 2},
			// 1 + 3×2 events: 7 × Settle/8 = 17.5 ms after the last.
			steps:   []step{mkdir("d", 0), scan, ev("d/a", 1, evCreated, true), ev("d/b", 2, evCreated, true), ev("d/c", 3, evCreated, true), ev("d/a", 4, evClosed, true), ev("d/b", 5, evClosed, true), ev("d/c", 6, evClosed, true)},
			pending: []string{"d (tree)"},
			due:     6*ms + 17500*time.Microsecond,
		},
		{
			name:    "events below it are absorbed whatever the switches say",
			steps:   []step{mkdir("d", 0), scan, ev("d/f", 30, evWritten, false)},
			pending: []string{"d (tree)"},
			due:     30*ms + 5*ms,
		},
		{
			name:    "its own removal is absorbed: the push of a tree that is gone deletes it",
			steps:   []step{mkdir("d", 0), scan, ev("d/f", 1, evClosed, true), ev("d/f", 2, evKept, true), ev("d", 3, evKept, true)},
			pending: []string{"d (tree)"},
			due:     3*ms + 5*ms,
		},
		{
			name:    "made again where a removal is recorded: the tree covers both",
			steps:   []step{ev("d", 0, evKept, true), mkdir("d", 1), scan},
			pending: []string{"d (tree)"},
			due:     1*ms + 5*ms,
		},
		{
			name:    "removed and made again while pending: not due before the new scan",
			steps:   []step{mkdir("d", 0), scan, ev("d", 1, evKept, true), mkdir("d", 2)},
			pending: []string{"d (tree)"},
			due:     -1,
		},
		{
			name:    "beside it, other paths are recorded as before",
			steps:   []step{mkdir("d", 0), scan, ev("dx", 1, evClosed, true), ev("e/f", 2, evClosed, true)},
			pending: []string{"d (tree)", "dx", "e/f"},
			due:     0 + 5*ms,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := ruleWatcher(t, tc.tune)
			at := func(ms int) time.Time { return w.epoch.Add(time.Duration(ms) * time.Millisecond) }
			for _, s := range tc.steps {
				s(w, at)
			}
			if got := w.pendingPaths(); !reflect.DeepEqual(got, tc.pending) {
				t.Fatalf("pending %q, want %q", got, tc.pending)
			}
			first := tc.pending[0]
			if i := len(first) - len(" (tree)"); i > 0 && first[i:] == " (tree)" {
				first = first[:i]
			}
			got := w.dueIn(t, first)
			switch {
			case tc.due < 0 && got < time.Hour:
				t.Errorf("due at %s, before its scan is done", got)
			case tc.due >= 0 && got != tc.due:
				t.Errorf("due at %s, want %s", got, tc.due)
			}
		})
	}
}

// Once handed on a tree is done with: what changes below it later is an
// ordinary change of its own path.
func TestTreeHandedOnThenPerPath(t *testing.T) {
	w, s := ruleWatcher(t, tuning{})
	at := func(ms int) time.Time { return w.epoch.Add(time.Duration(ms) * time.Millisecond) }
	w.newDir("d", at(0))
	scanAll(w)
	w.record("d/a", at(1), evClosed, true)
	if err := w.flush(at(100), false); err != nil {
		t.Fatal(err)
	}
	if got := s.last["d"]; !got.Tree || s.paths["d/a"] != 0 {
		t.Fatalf("handed on %v, d as %+v; want d alone, as a tree", s.paths, got)
	}
	w.record("d/b", at(101), evClosed, true)
	w.newDir("d/sub", at(102))
	if got, want := w.pendingPaths(), []string{"d/b", "d/sub (tree)"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pending %q, want %q", got, want)
	}
}

// With inotify: a directory removed and made again is no fresh tree (a
// target may still have its old content); a file replaced by a directory
// is (a target has nothing below it).
func TestRemadeDirectoryIsNotFresh(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "again"), 0o755))
	must(os.WriteFile(filepath.Join(root, "again/old"), nil, 0o644))
	must(os.WriteFile(filepath.Join(root, "was-file"), nil, 0o644))
	s := newSink()
	// A settle long enough that the removal and the new directory are
	// held together even on a busy machine.
	runWatcher(t, root, s, 200*time.Millisecond)
	for _, p := range []string{"again", "was-file"} {
		must(os.RemoveAll(filepath.Join(root, p)))
		must(os.Mkdir(filepath.Join(root, p), 0o755))
		must(os.WriteFile(filepath.Join(root, p, "new"), nil, 0o644))
	}
	testutil.Eventually(t, 5*time.Second, "both handed on", func() bool { return s.has("again") && s.has("was-file") })
	s.mu.Lock()
	defer s.mu.Unlock()
	if got, want := s.last["again"], (change.Change{Path: "again", Tree: true}); got != want {
		t.Errorf("a directory made again handed on as %+v, want %+v", got, want)
	}
	if got, want := s.last["was-file"], (change.Change{Path: "was-file", Tree: true, Fresh: true}); got != want {
		t.Errorf("a file replaced by a directory handed on as %+v, want %+v", got, want)
	}
}

// TestTreeFreshness: a new directory is a fresh tree (change.Change's
// Fresh: a push may list it) unless a directory of its name went while it
// was held, when a target may still have content below the name.
func TestTreeFreshness(t *testing.T) {
	cases := []struct {
		name   string
		before []recordKind // events of the name before the directory is made
		again  bool         // made, removed and made again
		fresh  bool
	}{
		{"made", nil, false, true},
		{"a file removed, a directory made", []recordKind{evKept}, false, true},
		{"a file written, then a directory made", []recordKind{evWritten, evKept}, false, true},
		{"a directory removed, made again", []recordKind{evDirGone}, false, false},
		{"chmod, directory removed, made again", []recordKind{evKept, evDirGone}, false, false},
		{"made, removed, made again", nil, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, s := ruleWatcher(t, tuning{})
			at := func(ms int) time.Time { return w.epoch.Add(time.Duration(ms) * time.Millisecond) }
			for i, ev := range tc.before {
				w.record("d", at(i), ev, true)
			}
			w.newDir("d", at(10))
			if tc.again {
				w.record("d", at(11), evDirGone, true)
				w.newDir("d", at(12))
			}
			scanAll(w)
			if err := w.flush(at(1000), false); err != nil {
				t.Fatal(err)
			}
			if got, want := s.last["d"], (change.Change{Path: "d", Tree: true, Fresh: tc.fresh}); got != want {
				t.Fatalf("handed on %+v, want %+v", got, want)
			}
		})
	}
}

// A tree the sink refuses is put back as a tree, and goes as one later.
func TestTreeRefusedIsKeptATree(t *testing.T) {
	w, s := ruleWatcher(t, tuning{})
	at := func(ms int) time.Time { return w.epoch.Add(time.Duration(ms) * time.Millisecond) }
	w.newDir("d", at(0))
	scanAll(w)
	s.setFail(fmt.Errorf("disk full"))
	if err := w.flush(at(100), false); err == nil {
		t.Fatal("the sink's refusal was not returned")
	}
	w.record("d/late", at(101), evClosed, true)
	s.setFail(nil)
	if err := w.flush(at(200), false); err != nil {
		t.Fatal(err)
	}
	if got := s.last["d"]; !got.Tree || s.paths["d/late"] != 0 {
		t.Fatalf("handed on %v, d as %+v; want d alone, as a tree, with d/late absorbed", s.paths, got)
	}
}

// With inotify: what a burst into new directories, a nested tree, a tree
// moved in and a file written below a tree already handed on come out as.
func TestNewDirectoriesAreTrees(t *testing.T) {
	root, stage := t.TempDir(), t.TempDir()
	s := newSink()
	write := func(rel string) { t.Helper(); writeAt(t, root, rel, rel) }
	// A tree is due Settle/4 after its last event: with 20 ms a 5 ms stall
	// of the writer (seen once in 12 runs here) handed on part of a burst.
	runWatcher(t, root, s, 100*time.Millisecond)
	for d := 0; d < 5; d++ {
		for f := 0; f < 20; f++ {
			write(fmt.Sprintf("burst/d%d/f%d", d, f))
		}
	}
	write("nest/a/b/c/f")
	if err := os.MkdirAll(filepath.Join(stage, "in/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "in/x/f"), []byte("moved"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(stage, "in"), filepath.Join(root, "in")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the trees handed on", func() bool {
		return s.has("burst") && s.has("nest") && s.has("in")
	})
	write("in/late")
	testutil.Eventually(t, 5*time.Second, "the late file", func() bool { return s.has("in/late") })
	time.Sleep(100 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]change.Change{
		"burst":   {Path: "burst", Tree: true, Fresh: true},
		"nest":    {Path: "nest", Tree: true, Fresh: true},
		"in":      {Path: "in", Tree: true, Fresh: true},
		"in/late": {Path: "in/late"},
	}
	if !reflect.DeepEqual(s.last, want) {
		t.Errorf("handed on %v, want %v", s.last, want)
	}
	for p, n := range s.paths {
		if n != 1 {
			t.Errorf("%q handed on %d times", p, n)
		}
	}
}

// A big file still being written in a new directory, made at once with
// the directory (before its watch, most likely), holds the directory's
// tree change as it would hold itself (bigFileSettle × Settle): the tree is
// handed on once, after the writer closed the file. Made after the tree
// was handed on, the file is held on its own, and handed on once too.
func TestTreeHeldWhileAFileInItIsWritten(t *testing.T) {
	cases := []struct {
		name    string
		wait    time.Duration // between the mkdir and the file's create
		carrier string        // what carries the file
	}{
		{"made at once: the tree carries it", 0, "d"},
		{"made after the tree went: on its own", 100 * time.Millisecond, "d/big"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := newSink()
			runWatcherTuned(t, root, s, 20*time.Millisecond, tuning{bigFileSize: 8 << 10})
			if err := os.Mkdir(filepath.Join(root, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.wait)
			f, err := os.Create(filepath.Join(root, "d", "big"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := 0; i < 12; i++ { // 12 pieces 30 ms apart, each more than Settle
				if _, err := f.Write(make([]byte, 16<<10)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(30 * time.Millisecond)
				if s.has(tc.carrier) {
					t.Fatalf("%s was handed on while the file was written, after %d pieces", tc.carrier, i+1)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, tc.carrier+" after the close", func() bool { return s.has(tc.carrier) })
			time.Sleep(100 * time.Millisecond)
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.paths[tc.carrier] != 1 || !s.last["d"].Tree {
				t.Fatalf("handed on %v (d: %+v), want %s once and d as a tree", s.paths, s.last["d"], tc.carrier)
			}
		})
	}
}
