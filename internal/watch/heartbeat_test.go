package watch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// blockingSink holds every Add until gate is closed, as a queue on a hung
// disk would.
type blockingSink struct {
	*sink
	entered chan struct{}
	gate    chan struct{}
}

func (s *blockingSink) Add(changes []change.Change) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.gate
	return s.sink.Add(changes)
}

// TestHeartbeatSeesAStuckCommit: a watcher waiting for events is alive
// however long it waits; one whose commit to the queue hangs is stuck
// until the commit returns.
func TestHeartbeatSeesAStuckCommit(t *testing.T) {
	root := t.TempDir()
	s := &blockingSink{sink: newSink(), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	reg := heartbeat.New()
	log, _ := newLogger()
	w, err := New(Options{Root: root, Events: allEvents, Sink: s, Log: log, Settle: 20 * time.Millisecond, MaxHold: time.Minute, Heartbeat: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	released := false
	t.Cleanup(func() {
		if !released {
			close(s.gate)
		}
		cancel()
		<-done
	})

	const bound = 100 * time.Millisecond
	reg.Stuck(time.Now(), bound)
	time.Sleep(3 * bound)
	if stuck := reg.Stuck(time.Now(), bound); len(stuck) > 0 {
		t.Fatalf("an idle watcher is reported stuck: %q", stuck)
	}

	if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the change never reached the sink")
	}
	var stuck []string
	testutil.Eventually(t, 5*time.Second, "the hung commit to be reported", func() bool {
		stuck = reg.Stuck(time.Now(), bound)
		return len(stuck) > 0
	})
	if len(stuck) != 1 || !strings.HasPrefix(stuck[0], "watch: commit to queue") {
		t.Fatalf("stuck = %q, want the commit loop alone", stuck)
	}

	close(s.gate)
	released = true
	testutil.Eventually(t, 5*time.Second, "the commit loop to be alive again", func() bool {
		return len(reg.Stuck(time.Now(), bound)) == 0
	})
	testutil.Eventually(t, 5*time.Second, "the change", func() bool { return s.has("f") })
}
