package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestRenamesCarryFrom: a rename within the tree hands the new path on with
// its old name as From, the old one as a plain change (its removal); a
// rename whose other half is outside the tree, or whose old name is
// excluded, has no From.
func TestRenamesCarryFrom(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, root, outside string)
		act    func(t *testing.T, root, outside string)
		want   map[string]change.Change // by path: what the sink must get last
		// below: paths below this one may come too (a moved directory's
		// content, found by its scan).
		below string
	}{
		{
			name:   "file",
			before: func(t *testing.T, root, _ string) { writeAt(t, root, "a", "a") },
			act:    func(t *testing.T, root, _ string) { mv(t, root, "a", root, "b") },
			want:   map[string]change.Change{"a": {Path: "a"}, "b": {Path: "b", From: "a"}},
		},
		{
			name: "directory",
			before: func(t *testing.T, root, _ string) {
				// Enough that its scan records it well after the old
				// name's removal is due.
				for i := range 3000 {
					writeAt(t, root, fmt.Sprintf("d/%d", i), "f")
				}
			},
			act:   func(t *testing.T, root, _ string) { mv(t, root, "d", root, "e") },
			want:  map[string]change.Change{"d": {Path: "d"}, "e": {Path: "e", From: "d"}},
			below: "e/",
		},
		{
			name:   "chain",
			before: func(t *testing.T, root, _ string) { writeAt(t, root, "a", "a") },
			act: func(t *testing.T, root, _ string) {
				mv(t, root, "a", root, "b")
				mv(t, root, "b", root, "c")
			},
			want: map[string]change.Change{"a": {Path: "a"}, "b": {Path: "b"}, "c": {Path: "c", From: "a"}},
		},
		{
			name:   "back to its name",
			before: func(t *testing.T, root, _ string) { writeAt(t, root, "a", "a") },
			act: func(t *testing.T, root, _ string) {
				mv(t, root, "a", root, "b")
				mv(t, root, "b", root, "a")
			},
			want: map[string]change.Change{"a": {Path: "a"}, "b": {Path: "b"}},
		},
		{
			name: "into another directory",
			before: func(t *testing.T, root, _ string) {
				writeAt(t, root, "a", "a")
				writeAt(t, root, "n/b", "b")
			},
			act:  func(t *testing.T, root, _ string) { mv(t, root, "a", root, "n/a") },
			want: map[string]change.Change{"a": {Path: "a"}, "n/a": {Path: "n/a", From: "a"}},
		},
		{
			name:   "in from outside",
			before: func(t *testing.T, _, outside string) { writeAt(t, outside, "x", "x") },
			act:    func(t *testing.T, root, outside string) { mv(t, outside, "x", root, "x") },
			want:   map[string]change.Change{"x": {Path: "x"}},
		},
		{
			name:   "out of the tree",
			before: func(t *testing.T, root, _ string) { writeAt(t, root, "x", "x") },
			act: func(t *testing.T, root, outside string) {
				mv(t, root, "x", outside, "x")
				writeAt(t, root, "y", "y") // a later create, not the other half
			},
			want: map[string]change.Change{"x": {Path: "x"}, "y": {Path: "y"}},
		},
		{
			// What editors do: the new content is written aside and
			// renamed over the old name. No target has the aside name
			// (it was made since the last hand-on), so there is nothing
			// to move from: the new name is an upload.
			name:   "written aside and renamed over",
			before: func(t *testing.T, root, _ string) { writeAt(t, root, "g", "old") },
			act: func(t *testing.T, root, _ string) {
				writeAt(t, root, "g.new", "new")
				mv(t, root, "g.new", root, "g")
			},
			want: map[string]change.Change{"g.new": {Path: "g.new"}, "g": {Path: "g"}},
		},
		{
			name:   "old name excluded",
			before: func(t *testing.T, root, _ string) { writeAt(t, root, "f.tmp", "f") },
			act:    func(t *testing.T, root, _ string) { mv(t, root, "f.tmp", root, "f") },
			want:   map[string]change.Change{"f": {Path: "f"}},
		},
	}
	flt, err := filter.New([]string{`(.*)\.tmp`})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			tc.before(t, root, outside)
			s := newSink()
			bs := &batchSink{sink: s, batch: map[string]int{}}
			log, _ := newLogger()
			w, err := New(Options{Root: root, Events: allEvents, Sink: bs, Log: log, Filter: flt,
				Settle: 40 * time.Millisecond, MaxHold: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			defer func() { cancel(); <-done }()
			tc.act(t, root, outside)
			testutil.Eventually(t, 5*time.Second, "every change handed on", func() bool {
				for p := range tc.want {
					if !s.has(p) {
						return false
					}
				}
				return true
			})
			time.Sleep(100 * time.Millisecond) // nothing more comes
			s.mu.Lock()
			defer s.mu.Unlock()
			for p, want := range tc.want {
				// Tree (a directory made or moved in: watch/trees.go) is
				// not what is tested here.
				if got := s.last[p]; got.Path != want.Path || got.From != want.From {
					t.Errorf("%q handed on as %+v, want %+v", p, got, want)
				}
			}
			for p, want := range tc.want {
				// The old name's removal goes with the new name: the push
				// that deletes it moves it first.
				if want.From != "" && bs.batch[want.From] != bs.batch[p] {
					t.Errorf("%q handed on in commit %d, its old name %q in commit %d", p, bs.batch[p], want.From, bs.batch[want.From])
				}
			}
			for p, c := range s.last {
				if _, ok := tc.want[p]; !ok && (tc.below == "" || !strings.HasPrefix(p, tc.below)) {
					t.Errorf("unexpected change %+v", c)
				}
			}
		})
	}
}

// batchSink notes in which Add each path came last.
type batchSink struct {
	*sink
	n     int
	batch map[string]int
}

func (b *batchSink) Add(changes []change.Change) error {
	b.sink.mu.Lock()
	b.n++
	for _, c := range changes {
		b.batch[c.Path] = b.n
	}
	b.sink.mu.Unlock()
	return b.sink.Add(changes)
}

func writeAt(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mv(t *testing.T, fromRoot, from, toRoot, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(fromRoot, from), filepath.Join(toRoot, to)); err != nil {
		t.Fatal(err)
	}
}

// TestRenamedTreeNotHeldForItsFiles: a directory renamed within the tree
// is handed on once quiet, not held as if its big file were being written
// (a directory moved in from outside is: its files may be mid-copy).
func TestRenamedTreeNotHeldForItsFiles(t *testing.T) {
	const settle = 100 * time.Millisecond // a big file holds a new tree 10 × settle
	tests := []struct {
		name    string
		outside bool
		writing bool          // a file in it is being written (open, not closed) when renamed
		within  time.Duration // handed on within this of the rename
		atLeast time.Duration // and not before
	}{
		{"renamed within the tree", false, false, 500 * time.Millisecond, 0},
		{"moved in from outside", true, false, time.Minute, 800 * time.Millisecond},
		{"renamed while a file in it is written", false, true, time.Minute, 800 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := t.TempDir(), t.TempDir()
			from := root
			if tc.outside {
				from = outside
			}
			writeAt(t, from, "d/big", strings.Repeat("b", 8<<10))
			writeAt(t, from, "d/small", "s")
			s := &timedSink{sink: newSink(), at: map[string]time.Time{}}
			runWatcherTuned(t, root, s, settle, tuning{bigFileSize: 4 << 10})
			time.Sleep(settle) // the watcher is quiet
			if tc.writing {
				f, err := os.OpenFile(filepath.Join(from, "d/big"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteString(strings.Repeat("w", 8<<10)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(settle / 10) // its write is read before the rename
			}
			renamed := time.Now()
			mv(t, from, "d", root, "e")
			testutil.Eventually(t, 10*time.Second, "e handed on", func() bool { return s.has("e") })
			at, _ := s.when("e")
			if d := at.Sub(renamed); d > tc.within || d < tc.atLeast {
				t.Errorf("handed on %v after the rename, want between %v and %v", d, tc.atLeast, tc.within)
			}
		})
	}
}
