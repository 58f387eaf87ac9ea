package verify

import (
	"reflect"
	"testing"

	"github.com/sersyncd/sersyncd/internal/rsync"
)

func TestRepairPaths(t *testing.T) {
	r := &Result{Entries: []rsync.Entry{
		{Kind: rsync.Missing, Path: "m", Type: "file"},
		{Kind: rsync.Differs, Path: "d", Type: "file"},
		{Kind: rsync.Extra, Path: "x/y/z", Type: "file"},
		{Kind: rsync.Extra, Path: "x/y", Type: "dir"},
		{Kind: rsync.Extra, Path: "x", Type: "dir"},
		{Kind: rsync.Extra, Path: "xx", Type: "file"},
		{Kind: rsync.Kept, Path: "k", Type: "file"},
	}}
	want := []string{"d", "m", "x", "xx"}
	if got := r.RepairPaths(); !reflect.DeepEqual(got, want) {
		t.Fatalf("RepairPaths = %q, want %q", got, want)
	}
}

func TestDropPending(t *testing.T) {
	r := &Result{}
	for _, e := range []rsync.Entry{
		{Kind: rsync.Missing, Path: "queued", Type: "file"},
		{Kind: rsync.Differs, Path: "dir", Type: "dir", Changes: []string{"time"}},
		{Kind: rsync.Missing, Path: "dir/queued", Type: "file"},
		{Kind: rsync.Extra, Path: "gone/below", Type: "file"},
		{Kind: rsync.Extra, Path: "gone", Type: "dir"},
		{Kind: rsync.Missing, Path: "drift", Type: "file"},
		{Kind: rsync.Differs, Path: "dirty", Type: "dir", Changes: []string{"perms"}},
		{Kind: rsync.Extra, Path: "queuedx", Type: "file"},
		{Kind: rsync.Kept, Path: "kept", Type: "file"},
	} {
		r.add(e)
	}
	r.DropPending(map[string]bool{"queued": true, "dir/queued": true, "gone": true, "dirty/x/y": true})
	var left []string
	for _, e := range r.Entries {
		left = append(left, e.Path)
	}
	// "dirty" is above a pending path, but its perms are drift all the same.
	want := []string{"drift", "dirty", "queuedx", "kept"}
	if !reflect.DeepEqual(left, want) || r.Missing != 1 || r.Differing != 1 || r.Extra != 1 || r.Kept != 1 {
		t.Fatalf("left %q, counts %+v; want %q", left, r, want)
	}
}
