package queue

import (
	"testing"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestChangesKeepHowTheyArePushed: a record keeps its change's Tree, Fresh
// and From across a reopen, merges a later change of its path into them, and
// drops From once a push that carried it is done.
func TestChangesKeepHowTheyArePushed(t *testing.T) {
	q, path := testutil.OpenQueue(t, Open, "", "t")
	add := func(q *Queue, cs ...change.Change) {
		t.Helper()
		if err := q.AddChanges([]string{"t"}, cs); err != nil {
			t.Fatal(err)
		}
	}
	add(q, change.Change{Path: "new", Tree: true}, change.Change{Path: "b", From: "a"}, change.Change{Path: "a"},
		change.Change{Path: "fresh", Tree: true, Fresh: true}, change.Change{Path: "twice", Tree: true, Fresh: true})
	// A plain change of a tree's path does not make it plain; a second
	// change of a fresh tree's path makes it a tree like any other.
	add(q, change.Change{Path: "new"}, change.Change{Path: "twice", Tree: true, Fresh: true})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, _ = testutil.OpenQueue(t, Open, path, "t")
	want := map[string]change.Change{
		"new":   {Path: "new", Tree: true},
		"b":     {Path: "b", From: "a"},
		"a":     {Path: "a"},
		"fresh": {Path: "fresh", Tree: true, Fresh: true},
		"twice": {Path: "twice", Tree: true},
	}
	items := mustClaim(t, q, "t", 10)
	if len(items) != len(want) {
		t.Fatalf("claimed %+v, want %d items", items, len(want))
	}
	for _, it := range items {
		if it.Change != want[it.Path] {
			t.Errorf("claimed %+v, want %+v", it.Change, want[it.Path])
		}
	}
	// b changes again while its push (with the rename) runs: it stays,
	// without the rename, which was done.
	add(q, change.Change{Path: "b"})
	mustAck(t, q, "t", items)
	again := mustClaim(t, q, "t", 10)
	if len(again) != 1 || again[0].Change != (change.Change{Path: "b"}) {
		t.Fatalf("after the ack: %+v, want b alone, plain", again)
	}
}

func TestMerge(t *testing.T) {
	cases := []struct {
		name    string
		a, b, m change.Change
	}{
		{"plain then tree", change.Change{Path: "d"}, change.Change{Path: "d", Tree: true}, change.Change{Path: "d", Tree: true}},
		{"tree then plain", change.Change{Path: "d", Tree: true}, change.Change{Path: "d"}, change.Change{Path: "d", Tree: true}},
		{"rename kept", change.Change{Path: "d", From: "x"}, change.Change{Path: "d"}, change.Change{Path: "d", From: "x"}},
		{"later rename wins", change.Change{Path: "d", From: "x"}, change.Change{Path: "d", From: "y"}, change.Change{Path: "d", From: "y"}},
		{"fresh twice is not fresh", change.Change{Path: "d", Tree: true, Fresh: true}, change.Change{Path: "d", Tree: true, Fresh: true}, change.Change{Path: "d", Tree: true}},
		{"fresh after a removal is not fresh", change.Change{Path: "d"}, change.Change{Path: "d", Tree: true, Fresh: true}, change.Change{Path: "d", Tree: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := change.Merge(tc.a, tc.b); got != tc.m {
				t.Fatalf("Merge(%+v, %+v) = %+v, want %+v", tc.a, tc.b, got, tc.m)
			}
		})
	}
}
