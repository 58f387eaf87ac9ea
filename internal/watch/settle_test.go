package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// A file saved whole again and again (open, write, close) is complete at
// each close: it is handed on within Settle/4 of quiet after every save,
// the tenth as soon as the first, and once per save. Before close-write
// counted, each save within recentFor of the last one's hand-on counted
// its events twice over: measured then 26 ms, 75 ms, 163 ms, 350 ms,
// 726 ms ... and 5 s (50 × Settle) from the 8th save on.
func TestSavedAgainIsNotHeld(t *testing.T) {
	const settle = 100 * time.Millisecond
	root := t.TempDir()
	s := &timedSink{sink: newSink(), at: map[string]time.Time{}}
	runWatcher(t, root, s, settle)
	p := filepath.Join(root, "doc.txt")
	var lat []time.Duration
	for i := 0; i < 10; i++ {
		if err := os.WriteFile(p, content(i), 0o644); err != nil {
			t.Fatal(err)
		}
		closed := time.Now()
		testutil.Eventually(t, 5*time.Second, "the save handed on", func() bool { return s.count("doc.txt") == i+1 })
		at, _ := s.when("doc.txt")
		lat = append(lat, at.Sub(closed))
		time.Sleep(settle / 2) // the next save comes well within recentFor
	}
	t.Logf("handed on after each close: %v", lat)
	for i, d := range lat {
		// Settle/4 of quiet, plus room for a loaded machine; an escalated
		// hold is Settle or more from the second save on.
		if d >= settle*3/4 {
			t.Errorf("save %d handed on %s after its close; a complete file waits %s", i+1, d, settle/4)
		}
	}
	time.Sleep(settle)
	if n := s.count("doc.txt"); n != 10 {
		t.Errorf("handed on %d times for 10 saves", n)
	}
}

// A file still open for writing is held while it grows, even right after
// it was saved whole a few times, and handed on once, whole, as soon as its
// writer closes it.
func TestGrowingFileIsHeldUntilClosed(t *testing.T) {
	const settle = 100 * time.Millisecond
	root := t.TempDir()
	s := &timedSink{sink: newSink(), at: map[string]time.Time{}}
	runWatcher(t, root, s, settle)
	p := filepath.Join(root, "log")
	for i := 0; i < 3; i++ {
		if err := os.WriteFile(p, content(i), 0o644); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, "the save handed on", func() bool { return s.count("log") == i+1 })
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 40; i++ { // 40 appends 10 ms apart: never quiet for Settle/4
		if _, err := f.Write([]byte("line\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if n := s.count("log"); n != 3 {
			t.Fatalf("handed on while still being written, after %d appends", i+1)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	testutil.Eventually(t, 5*time.Second, "the closed file handed on", func() bool { return s.count("log") == 4 })
	at, _ := s.when("log")
	if d := at.Sub(closed); d >= settle*3/4 {
		t.Errorf("handed on %s after its writer closed it; a complete file waits %s", d, settle/4)
	}
	time.Sleep(settle)
	if n := s.count("log"); n != 4 {
		t.Errorf("handed on %d times, want 3 saves + 1", n)
	}
}

// A file written aside and renamed into place is as complete as its
// temporary was: the new name and the old one go in one commit, at once,
// without the Settle a moved-in file of unknown origin waits.
func TestRenamedIntoPlaceIsComplete(t *testing.T) {
	const settle = 200 * time.Millisecond
	root := t.TempDir()
	s := &timedSink{sink: newSink(), at: map[string]time.Time{}}
	runWatcher(t, root, s, settle)
	tmp, final := filepath.Join(root, ".doc.swp"), filepath.Join(root, "doc")
	if err := os.WriteFile(tmp, content(1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	renamed := time.Now()
	testutil.Eventually(t, 5*time.Second, "both names handed on", func() bool { return s.has("doc") && s.has(".doc.swp") })
	at, _ := s.when("doc")
	old, _ := s.when(".doc.swp")
	if d := at.Sub(renamed); d >= settle*3/4 {
		t.Errorf("renamed into place, handed on after %s; its temporary was complete", d)
	}
	if !at.Equal(old) {
		t.Errorf("the new name and the old one in two commits, %s apart", at.Sub(old))
	}
}

func content(i int) []byte {
	b := make([]byte, 100+i)
	b[0] = byte(i)
	return b
}

func (s *timedSink) count(p string) int {
	s.sink.mu.Lock()
	defer s.sink.mu.Unlock()
	return s.paths[p]
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
	testutil.Eventually(t, 5*time.Second, "the lone write", func() bool { return r.sink.has("lone") })
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
	testutil.Eventually(t, 5*time.Second, "the grown file", func() bool { return r.sink.has("growing") })
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
	testutil.Eventually(t, 5*time.Second, "the file", func() bool { return s.has("big") })
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
			runWatcherTuned(t, root, s, 20*time.Millisecond, tuning{bigFileSize: 8 << 10})
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
			testutil.Eventually(t, 5*time.Second, "the file", func() bool { return s.has("file") })
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
	w := &Watcher{opt: Options{Root: root, Settle: 20 * time.Millisecond, tune: tuning{}.withDefaults()}}
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
		{"empty file: about to be written", mk("empty", 0), false, defaultEmptyFileSettle * 20 * time.Millisecond},
		{"truncated to empty", mk("trunc", 0), true, defaultEmptyFileSettle * 20 * time.Millisecond},
		{"content but no write event yet: its first write is running", mk("first", 4096), false, 20 * time.Millisecond},
		{"big file", mk("big", int(defaultBigFileSize)), true, defaultBigFileSettle * 20 * time.Millisecond},
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
