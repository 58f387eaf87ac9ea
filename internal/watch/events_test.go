package watch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOverflowStormLoggedOnce: a storm of overflows is one warning and one
// queued re-watch, not one per overflow.
func TestOverflowStormLoggedOnce(t *testing.T) {
	root := t.TempDir()
	log, out := newLogger()
	w, err := New(Options{Root: root, Events: allEvents, Sink: newSink(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer w.in.close()
	now := time.Now()
	for i := 0; i < 500; i++ {
		w.overflowed(now.Add(time.Duration(i) * time.Millisecond))
		w.queueDirOp(dirOp{kind: opResync})
	}
	if n := strings.Count(out.String(), "overflowed"); n != 1 {
		t.Fatalf("%d overflow warnings for a storm of 500:\n%s", n, out.String())
	}
	if n := len(w.dirOps); n != 1 {
		t.Fatalf("%d re-watches queued for a storm, want 1", n)
	}
	if w.Overflows() != 500 {
		t.Fatalf("Overflows() = %d", w.Overflows())
	}
	// After the quiet interval the next one is reported, with the count.
	w.overflowed(now.Add(w.opt.tune.overflowLogEvery + time.Second))
	if !strings.Contains(out.String(), "overflows=500") {
		t.Fatalf("the second report does not count the storm:\n%s", out.String())
	}
}

// TestRootRemovedStopsRun: the watched directory itself going away ends Run
// with an error that says so, instead of running on blind.
func TestRootRemovedStopsRun(t *testing.T) {
	for _, how := range []string{"remove", "rename"} {
		t.Run(how, func(t *testing.T) {
			parent := t.TempDir()
			root := filepath.Join(parent, "root")
			if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			r, err := startWatcher(t, root, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if how == "remove" {
				err = os.RemoveAll(root)
			} else {
				err = os.Rename(root, filepath.Join(parent, "elsewhere"))
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-r.done:
				close(r.done)
				if !errors.Is(err, ErrRootGone) || !strings.Contains(err.Error(), root) {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run goes on after its root went away")
			}
		})
	}
}
