package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file saved whole again and again (open, write, close) is complete at
// each close: it is handed on within Settle/4 of quiet after every save,
// the tenth as soon as the first, and once per save. Before close-write
// counted, each save within RecentFor of the last one's hand-on counted
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
		waitFor(t, 5*time.Second, "the save handed on", func() bool { return s.count("doc.txt") == i+1 })
		at, _ := s.when("doc.txt")
		lat = append(lat, at.Sub(closed))
		time.Sleep(settle / 2) // the next save comes well within RecentFor
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
		waitFor(t, 5*time.Second, "the save handed on", func() bool { return s.count("log") == i+1 })
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
	waitFor(t, 5*time.Second, "the closed file handed on", func() bool { return s.count("log") == 4 })
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
	waitFor(t, 5*time.Second, "both names handed on", func() bool { return s.has("doc") && s.has(".doc.swp") })
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
