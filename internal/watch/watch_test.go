package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/pace"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// sink records what the watcher hands on; it fails while fail is set.
type sink struct {
	mu    sync.Mutex
	paths map[string]int
	full  int
	fail  error
	// failAdd fails Add only: a queue with room for one small record.
	failAdd error
}

func newSink() *sink { return &sink{paths: map[string]int{}} }

func (s *sink) Add(paths []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.failAdd != nil {
		return s.failAdd
	}
	for _, p := range paths {
		s.paths[p]++
	}
	return nil
}

func (s *sink) MarkMissed(string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.full++
	return nil
}

func (s *sink) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *sink) fulls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full
}

func (s *sink) has(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[p] > 0
}

// logBuf is a logger whose output the test can read while the watcher writes.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*logrus.Logger, *logBuf) {
	out := &logBuf{}
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(logrus.DebugLevel)
	return log, out
}

var allEvents = config.Events{Delete: true, CreateFolder: true, CloseWrite: true, MoveFrom: true, MoveTo: true}

type running struct {
	w    *Watcher
	sink *sink
	log  *logBuf
	stop context.CancelFunc
	done chan error
}

func startWatcher(t *testing.T, root string, opt Options) (*running, error) {
	t.Helper()
	log, out := newLogger()
	s := newSink()
	opt.Root, opt.Events, opt.Sink, opt.Log = root, allEvents, s, log
	w, err := New(opt)
	if err != nil {
		return &running{log: out}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, sink: s, log: out, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() { r.shutdown(t) })
	return r, nil
}

func (r *running) shutdown(t *testing.T) error {
	t.Helper()
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not stop")
		return nil
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lowerWatchLimit sets fs.inotify.max_user_watches to what is in use plus
// room, for as short a time as possible: the limit is shared with every
// other process of this user. It returns the restore function (also run by
// t.Cleanup) or skips the test.
func lowerWatchLimit(t *testing.T, room int) func() {
	t.Helper()
	old, err := os.ReadFile(MaxUserWatchesPath)
	if err != nil {
		t.Skipf("cannot read %s: %v", MaxUserWatchesPath, err)
	}
	if err := os.WriteFile(MaxUserWatchesPath, []byte(fmt.Sprint(testutil.InotifyWatchesInUse()+room)), 0o644); err != nil {
		t.Skipf("cannot lower %s for this test (needs root and a writable /proc/sys): %v", MaxUserWatchesPath, err)
	}
	var once sync.Once
	restore := func() {
		once.Do(func() {
			if err := os.WriteFile(MaxUserWatchesPath, old, 0o644); err != nil {
				t.Errorf("restore %s: %v", MaxUserWatchesPath, err)
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
	waitFor(t, 5*time.Second, "a full sync and the end of degraded mode", func() bool {
		return r.w.Degraded() == nil && r.sink.fulls() > 0
	})
	if got := r.w.Dirs(); got != 21 {
		t.Fatalf("%d directories watched after the limit was raised, want 21", got)
	}
	// And changes are seen again in every directory.
	if err := os.WriteFile(filepath.Join(root, "d19", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "d19/f recorded", func() bool { return r.sink.has("d19/f") })
}

// TestWatchLimitAtRuntime: a new directory whose watch the kernel refuses
// is not silently unwatched: its content is recorded, a full sync is asked
// for at once and then periodically while the limit holds.
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
	waitFor(t, 5*time.Second, "degraded mode", func() bool { return r.w.Degraded() != nil })
	restore()
	waitFor(t, 5*time.Second, "a full sync", func() bool { return r.sink.fulls() > 0 })
	waitFor(t, 5*time.Second, "every file of the new tree recorded", func() bool {
		for i := 0; i < 10; i++ {
			if !r.sink.has(fmt.Sprintf("new/s%d/f", i)) {
				return false
			}
		}
		return true
	})
	if !strings.Contains(r.log.String(), "sysctl -w fs.inotify.max_user_watches=") {
		t.Errorf("no advice on the sysctl in the log:\n%s", r.log.String())
	}
	waitFor(t, 5*time.Second, "every directory watched again", func() bool { return r.w.Degraded() == nil })
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
	w.overflowed(now.Add(OverflowLogEvery + time.Second))
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
	waitFor(t, 5*time.Second, "the held changes and the full sync", func() bool {
		for i := 0; i < 20; i++ {
			if !r.sink.has(fmt.Sprintf("f%d", i)) {
				return false
			}
		}
		return r.sink.fulls() == 1
	})
}

// TestCommitFallsBackToFullSync: when the queue refuses the held changes
// for CommitFallbackAfter but takes a full sync, the watcher asks for one
// and forgets what the full push covers.
func TestCommitFallsBackToFullSync(t *testing.T) {
	old := CommitFallbackAfter
	CommitFallbackAfter = 300 * time.Millisecond
	t.Cleanup(func() { CommitFallbackAfter = old })
	root := t.TempDir()
	r, err := startWatcher(t, root, Options{})
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
	waitFor(t, 5*time.Second, "a full sync instead of the held changes, and the warning", func() bool {
		return r.sink.fulls() == 1 && r.w.held() == 0 && strings.Contains(r.log.String(), "a full push of the tree is queued instead")
	})
}

// A file written in one go is handed on long before the settle time; one
// still being written is held until it has been quiet for all of it.
func TestSettleAdaptsToTheWriter(t *testing.T) {
	const settle = 400 * time.Millisecond
	root := t.TempDir()
	r, err := startWatcher(t, root, Options{Settle: settle, MaxHold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := os.WriteFile(filepath.Join(root, "lone"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the lone write", func() bool { return r.sink.has("lone") })
	if took := time.Since(start); took >= settle/2 {
		t.Fatalf("a lone write took %s to be handed on; the settle time is %s", took, settle)
	}

	f, err := os.Create(filepath.Join(root, "growing"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 60; i++ { // 60 writes, 10 ms apart: never quiet for long
		if _, err := f.Write([]byte("chunk\n")); err != nil {
			t.Fatal(err)
		}
		if r.sink.has("growing") {
			t.Fatalf("a file still being written was handed on after %d writes", i+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	lastWrite := time.Now()
	waitFor(t, 5*time.Second, "the grown file", func() bool { return r.sink.has("growing") })
	if quiet := time.Since(lastWrite); quiet < settle*3/4 {
		t.Fatalf("handed on %s after its last write, before it was quiet for the settle time %s", quiet, settle)
	}
}

// A file appended to in pieces with pauses longer than the quiet time of a
// lone write is handed on a few times at most, not once per piece.
func TestPiecewiseWriterIsNotPushedPerPiece(t *testing.T) {
	root := t.TempDir()
	s := &countingSink{sink: newSink()}
	runWatcher(t, root, s, 20*time.Millisecond)
	f, err := os.Create(filepath.Join(root, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 50; i++ { // 50 pieces, 15 ms apart
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the file", func() bool { return s.has("big") })
	time.Sleep(200 * time.Millisecond)
	t.Logf("handed on %d times", s.count("big"))
	if n := s.count("big"); n > 6 {
		t.Fatalf("handed on %d times for 50 pieces", n)
	}
}

// countingSink counts how often each path is handed on.
type countingSink struct {
	*sink
}

func (c *countingSink) count(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[p]
}

// What a file's size says about its writer: a big file written with pauses
// longer than a lone write's quiet time, or a file created empty and
// written a moment later, is handed on once, when the writer is done, not
// part-written first.
func TestFileSizeHoldsAFileStillBeingWritten(t *testing.T) {
	defer func(size int64) { BigFileSize = size }(BigFileSize)
	BigFileSize = 8 << 10
	cases := []struct {
		name   string
		pieces int
		size   int
		pause  time.Duration
		empty  time.Duration // pause between the create and the first write
	}{
		{name: "big file in appends 30 ms apart", pieces: 8, size: 8 << 10, pause: 30 * time.Millisecond},
		{name: "created empty, written 30 ms later", pieces: 1, size: 100, empty: 30 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := &countingSink{sink: newSink()}
			runWatcher(t, root, s, 20*time.Millisecond)
			f, err := os.Create(filepath.Join(root, "file"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			time.Sleep(tc.empty)
			for i := 0; i < tc.pieces; i++ {
				if i > 0 {
					time.Sleep(tc.pause)
				}
				if _, err := f.Write(make([]byte, tc.size)); err != nil {
					t.Fatal(err)
				}
				if n := s.count("file"); n > 0 {
					t.Fatalf("handed on after %d of %d writes", i+1, tc.pieces)
				}
			}
			waitFor(t, 5*time.Second, "the file", func() bool { return s.has("file") })
			time.Sleep(300 * time.Millisecond)
			if n := s.count("file"); n != 1 {
				t.Fatalf("handed on %d times, want once", n)
			}
		})
	}
}

// What a file's size and events say about how long it waits.
func TestSizeQuiet(t *testing.T) {
	root := t.TempDir()
	w := &Watcher{opt: Options{Root: root, Settle: 20 * time.Millisecond}}
	mk := func(name string, size int) os.FileInfo {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, _ := os.Lstat(filepath.Join(root, "dir"))
	cases := []struct {
		name    string
		fi      os.FileInfo
		written bool
		want    time.Duration
	}{
		{"small file, written", mk("small", 100), true, 0},
		{"empty file: about to be written", mk("empty", 0), false, EmptyFileSettle * 20 * time.Millisecond},
		{"truncated to empty", mk("trunc", 0), true, EmptyFileSettle * 20 * time.Millisecond},
		{"content but no write event yet: its first write is running", mk("first", 4096), false, 20 * time.Millisecond},
		{"big file", mk("big", int(BigFileSize)), true, BigFileSettle * 20 * time.Millisecond},
		{"directory", dir, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.sizeQuiet(tc.fi, tc.written); got != tc.want {
				t.Fatalf("sizeQuiet = %s, want %s", got, tc.want)
			}
		})
	}
}

// timedSink records when each path was handed on.
type timedSink struct {
	*sink
	mu sync.Mutex
	at map[string]time.Time
}

// Add stamps the paths before the sink holds them: a test that sees a path
// in the sink then always finds its time.
func (s *timedSink) Add(paths []string) error {
	now := time.Now()
	s.mu.Lock()
	for _, p := range paths {
		s.at[p] = now
	}
	s.mu.Unlock()
	return s.sink.Add(paths)
}

func (s *timedSink) when(p string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[p]
	return t, ok
}

// Commits of several paths are spaced BusyCommitGap×Settle apart only in
// a stream (pace.StreamRun of them back to back): the batches of a short
// burst go at once, the one after a stream of them waits.
func TestCommitSpacingOnlyInAStream(t *testing.T) {
	const settle = 100 * time.Millisecond
	root, staging := t.TempDir(), t.TempDir()
	s := &timedSink{sink: newSink(), at: map[string]time.Time{}}
	runWatcher(t, root, s, settle)
	// A directory of several files moved in is found by one scan: its
	// paths are recorded together and committed together.
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
		last := fmt.Sprintf("%s/%d", dir, busyPaths-1)
		waitFor(t, 5*time.Second, "batch "+dir, func() bool { return s.has(last) })
		at, _ := s.when(last)
		return at
	}
	prev := batch(1)
	for n := 2; n <= pace.StreamRun; n++ {
		at := batch(n)
		if gap := at.Sub(prev); gap >= BusyCommitGap*settle/2 {
			t.Errorf("commit %d of a burst came %s after the one before: held as if in a stream", n, gap)
		}
		prev = at
	}
	if gap := batch(pace.StreamRun + 1).Sub(prev); gap < BusyCommitGap*settle*9/10 {
		t.Errorf("the commit after a stream of %d came %s after the last, want at least %s", pace.StreamRun, gap, BusyCommitGap*settle)
	}
}

// runWatcher runs a watcher of root into s until the test ends.
func runWatcher(t *testing.T, root string, s Sink, settle time.Duration) {
	t.Helper()
	log, _ := newLogger()
	w, err := New(Options{Root: root, Events: allEvents, Sink: s, Log: log, Settle: settle, MaxHold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
