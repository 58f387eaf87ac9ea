package watch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/pace"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestSinkFailureKeepsChangesAndFullSync: while the sink (the queue's disk)
// fails, recorded paths and a requested full sync stay in memory and are
// handed on once it works again, however long that takes.
func TestSinkFailureKeepsChangesAndFullSync(t *testing.T) {
	root := t.TempDir()
	r, err := startWatcher(t, root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.sink.setFail(errors.New("no space left on device"))
	for i := 0; i < 20; i++ {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.w.requestFullSync("test")
	// Longer than the old ten retries of a full sync took.
	time.Sleep(6 * time.Second)
	if n := strings.Count(r.log.String(), "commit changes to queue"); n != 1 {
		t.Errorf("%d error lines for one outage, want 1:\n%s", n, r.log.String())
	}
	r.sink.setFail(nil)
	testutil.Eventually(t, 5*time.Second, "the held changes and the full sync", func() bool {
		for i := 0; i < 20; i++ {
			if !r.sink.has(fmt.Sprintf("f%d", i)) {
				return false
			}
		}
		return r.sink.fulls() == 1
	})
}

// TestCommitFallsBackToFullSync: when the queue refuses the held changes
// for commitFallbackAfter but takes a full sync, the watcher asks for one
// and forgets what the full push covers.
func TestCommitFallsBackToFullSync(t *testing.T) {
	root := t.TempDir()
	r, err := startWatcher(t, root, Options{tune: tuning{commitFallbackAfter: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	r.sink.mu.Lock()
	r.sink.failAdd = errors.New("no space left on device")
	r.sink.mu.Unlock()
	for i := 0; i < 50; i++ {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The warning is written after the held changes are dropped: wait for
	// all three, or the check can run between the drop and the log line.
	testutil.Eventually(t, 5*time.Second, "a full sync instead of the held changes, and the warning", func() bool {
		return r.sink.fulls() == 1 && r.w.held() == 0 && strings.Contains(r.log.String(), "a full push of the tree is queued instead")
	})
}

// Commits of several paths are spaced defaultBusyCommitGap×Settle apart only in
// a stream (pace.StreamRun of them back to back): the batches of a short
// burst go at once, the one after a stream of them waits.
func TestCommitSpacingOnlyInAStream(t *testing.T) {
	const settle = 100 * time.Millisecond
	root, staging := t.TempDir(), t.TempDir()
	s := &timedSink{sink: newSink(), at: map[string]time.Time{}}
	runWatcher(t, root, s, settle)
	// A directory of several files moved in is one tree change, which
	// counts as a batch of busyPaths.
	batch := func(n int) time.Time {
		dir := fmt.Sprintf("batch%d", n)
		if err := os.Mkdir(filepath.Join(staging, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < busyPaths; i++ {
			if err := os.WriteFile(filepath.Join(staging, dir, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Rename(filepath.Join(staging, dir), filepath.Join(root, dir)); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "batch "+dir, func() bool { return s.has(dir) })
		at, _ := s.when(dir)
		return at
	}
	prev := batch(1)
	for n := 2; n <= pace.StreamRun; n++ {
		at := batch(n)
		if gap := at.Sub(prev); gap >= defaultBusyCommitGap*settle/2 {
			t.Errorf("commit %d of a burst came %s after the one before: held as if in a stream", n, gap)
		}
		prev = at
	}
	if gap := batch(pace.StreamRun + 1).Sub(prev); gap < defaultBusyCommitGap*settle*9/10 {
		t.Errorf("the commit after a stream of %d came %s after the last, want at least %s", pace.StreamRun, gap, defaultBusyCommitGap*settle)
	}
}
