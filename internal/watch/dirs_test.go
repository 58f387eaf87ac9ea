package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// lowerWatchLimit sets fs.inotify.max_user_watches to what is in use plus
// room, for as short a time as possible: the limit is shared with every
// other process of this user. It returns the restore function (also run by
// t.Cleanup) or skips the test.
func lowerWatchLimit(t *testing.T, room int) func() {
	t.Helper()
	old, err := os.ReadFile(maxUserWatchesPath)
	if err != nil {
		t.Skipf("cannot read %s: %v", maxUserWatchesPath, err)
	}
	if err := os.WriteFile(maxUserWatchesPath, []byte(fmt.Sprint(testutil.InotifyWatchesInUse()+room)), 0o644); err != nil {
		t.Skipf("cannot lower %s for this test (needs root and a writable /proc/sys): %v", maxUserWatchesPath, err)
	}
	var once sync.Once
	restore := func() {
		once.Do(func() {
			if err := os.WriteFile(maxUserWatchesPath, old, 0o644); err != nil {
				t.Errorf("restore %s: %v", maxUserWatchesPath, err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

func mkdirs(t *testing.T, root string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("d%02d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWatchLimitAtStartDegrades: with too few watches for the tree the
// watcher starts anyway, says which sysctl to raise and by how much, pushes
// the whole tree periodically, and leaves that mode once the watches fit.
func TestWatchLimitAtStartDegrades(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, 20)
	restore := lowerWatchLimit(t, 5)
	r, err := startWatcher(t, root, Options{DegradedFullSyncEvery: 200 * time.Millisecond})
	restore()
	if err != nil {
		t.Fatalf("New with too few watches: %v", err)
	}
	limit := r.w.Degraded()
	if limit == nil {
		t.Skipf("the limit did not bite (%d dirs watched): other inotify users freed watches meanwhile", r.w.Dirs())
	}
	msg := limit.Error()
	t.Log(msg)
	for _, want := range []string{"fs.inotify.max_user_watches", "sysctl -w fs.inotify.max_user_watches=", "raise it by at least", "of the tree's 21 directories"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the limit error does not say %q: %s", want, msg)
		}
	}
	if limit.Total != 21 || limit.Dirs+limit.Failed != 21 || limit.Failed == 0 {
		t.Errorf("limit error counts: %+v", *limit)
	}
	if !strings.Contains(r.log.String(), "pushing the whole tree every 200ms") {
		t.Errorf("degraded mode not logged:\n%s", r.log.String())
	}
	// The limit is back: the next tick watches everything and a last full
	// push brings what changed meanwhile.
	testutil.Eventually(t, 5*time.Second, "a full sync and the end of degraded mode", func() bool {
		return r.w.Degraded() == nil && r.sink.fulls() > 0
	})
	if got := r.w.Dirs(); got != 21 {
		t.Fatalf("%d directories watched after the limit was raised, want 21", got)
	}
	// And changes are seen again in every directory.
	if err := os.WriteFile(filepath.Join(root, "d19", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "d19/f recorded", func() bool { return r.sink.has("d19/f") })
}

// TestWatchLimitAtRuntime: a new directory whose watch the kernel refuses
// is not silently unwatched: it is handed on as a tree (whose push carries
// what it holds), a full sync is asked for at once and then periodically
// while the limit holds.
func TestWatchLimitAtRuntime(t *testing.T) {
	root := t.TempDir()
	r, err := startWatcher(t, root, Options{DegradedFullSyncEvery: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	restore := lowerWatchLimit(t, 2)
	// Made elsewhere and moved in, so the scan finds it whole.
	stage := t.TempDir()
	for i := 0; i < 10; i++ {
		p := filepath.Join(stage, "new", fmt.Sprintf("s%d", i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(stage, "new"), filepath.Join(root, "new")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "degraded mode", func() bool { return r.w.Degraded() != nil })
	restore()
	testutil.Eventually(t, 5*time.Second, "a full sync", func() bool { return r.sink.fulls() > 0 })
	testutil.Eventually(t, 5*time.Second, "the new tree handed on as one", func() bool {
		r.sink.mu.Lock()
		defer r.sink.mu.Unlock()
		return r.sink.last["new"].Tree
	})
	if !strings.Contains(r.log.String(), "sysctl -w fs.inotify.max_user_watches=") {
		t.Errorf("no advice on the sysctl in the log:\n%s", r.log.String())
	}
	testutil.Eventually(t, 5*time.Second, "every directory watched again", func() bool { return r.w.Degraded() == nil })
	if got := r.w.Dirs(); got != 12 {
		t.Fatalf("%d directories watched, want 12", got)
	}
}

func TestWatchLimitErrorMessage(t *testing.T) {
	e := &WatchLimitError{Dirs: 900, Total: 1000, Failed: 100, Limit: 8192, Err: errors.New("no space left on device")}
	msg := e.Error()
	for _, want := range []string{"900 of the tree's 1000 directories are watched, 100 are not", "fs.inotify.max_user_watches=8192", "raise it by at least 100", "sysctl -w fs.inotify.max_user_watches=10240"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q missing from %s", want, msg)
		}
	}
	e = &WatchLimitError{Dirs: 3, Failed: 1, Err: errors.New("x")}
	if msg := e.Error(); !strings.Contains(msg, "=unknown") || !strings.Contains(msg, "by at least 1") {
		t.Errorf("unknown limit: %s", msg)
	}
}
