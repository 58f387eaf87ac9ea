package watch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// sink records what the watcher hands on; it fails while fail is set.
type sink struct {
	mu    sync.Mutex
	paths map[string]int
	last  map[string]change.Change // the last change handed on per path
	full  int
	fail  error
	// failAdd fails Add only: a queue with room for one small record.
	failAdd error
}

func newSink() *sink { return &sink{paths: map[string]int{}, last: map[string]change.Change{}} }

func (s *sink) Add(changes []change.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.failAdd != nil {
		return s.failAdd
	}
	for _, c := range changes {
		s.paths[c.Path]++
		s.last[c.Path] = c
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

// newLogger is a logger whose output the test can read while the watcher writes.
func newLogger() (*logrus.Logger, *testutil.Buffer) {
	out := &testutil.Buffer{}
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(logrus.DebugLevel)
	return log, out
}

var allEvents = config.Events{Delete: true, CreateFolder: true, CloseWrite: true, MoveFrom: true, MoveTo: true}

type running struct {
	w    *Watcher
	sink *sink
	log  *testutil.Buffer
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

// timedSink records when each path was handed on.
type timedSink struct {
	*sink
	mu sync.Mutex
	at map[string]time.Time
}

// Add stamps the paths before the sink holds them: a test that sees a path
// in the sink then always finds its time.
func (s *timedSink) Add(changes []change.Change) error {
	now := time.Now()
	s.mu.Lock()
	for _, c := range changes {
		s.at[c.Path] = now
	}
	s.mu.Unlock()
	return s.sink.Add(changes)
}

func (s *timedSink) when(p string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[p]
	return t, ok
}

// runWatcher runs a watcher of root into s until the test ends.
func runWatcher(t *testing.T, root string, s Sink, settle time.Duration) {
	t.Helper()
	runWatcherTuned(t, root, s, settle, tuning{})
}

// runWatcherTuned is runWatcher with knobs other than the defaults.
func runWatcherTuned(t *testing.T, root string, s Sink, settle time.Duration, tune tuning) {
	t.Helper()
	log, _ := newLogger()
	w, err := New(Options{Root: root, Events: allEvents, Sink: s, Log: log, Settle: settle, MaxHold: time.Minute, tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
