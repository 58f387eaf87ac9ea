package rsync

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/filter"
)

// TestTreeChangeListsItsContent: a Tree change pushes its directory and
// everything below it that the filter keeps; a plain change of a directory
// only the directory.
func TestTreeChangeListsItsContent(t *testing.T) {
	src := t.TempDir()
	for _, f := range []string{"new/a", "new/sub/b", "new/x.tmp", "new/cache/c", "old/d"} {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flt, err := filter.New([]string{`(.*)\.tmp`, `^new/cache`})
	if err != nil {
		t.Fatal(err)
	}
	bin, _, stdinFile := fakeRsync(t, "exit 0")
	tgt := New(Options{Binary: bin, Source: src, Dest: "h::m", Filter: flt})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tgt.Push(ctx, []change.Change{{Path: "new", Tree: true}, {Path: "old"}}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := os.ReadFile(stdinFile)
	got := strings.Split(strings.TrimSuffix(string(stdin), "\x00"), "\x00")
	slices.Sort(got)
	want := []string{"./new", "./new/a", "./new/sub", "./new/sub/b", "./old"}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
}
