package heartbeat

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestStuck(t *testing.T) {
	t0 := time.Unix(1000, 0)
	bound := 10 * time.Second
	tests := []struct {
		name string
		busy bool // when first seen
		// step runs between the first look (at t0) and the second (at t0+elapsed).
		step    func(l *Loop)
		elapsed time.Duration
		stuck   bool
	}{
		{"idle for long", false, func(l *Loop) {}, time.Hour, false},
		{"busy under the bound", true, func(l *Loop) {}, 9 * time.Second, false},
		{"busy with one piece of work past the bound", true, func(l *Loop) {}, 10 * time.Second, true},
		{"busy past the bound but moving on", true, func(l *Loop) { l.Idle(); l.Busy() }, time.Hour, false},
		{"busy, then back waiting", true, func(l *Loop) { l.Idle() }, time.Hour, false},
		{"stopped while busy", true, func(l *Loop) { l.Stop() }, time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			l := r.Loop("loop")
			if tc.busy {
				l.Busy()
			}
			r.Stuck(t0, bound)
			tc.step(l)
			got := r.Stuck(t0.Add(tc.elapsed), bound)
			if (len(got) > 0) != tc.stuck {
				t.Fatalf("Stuck = %q, want stuck %v", got, tc.stuck)
			}
		})
	}
}

func TestStuckNamesEveryStuckLoop(t *testing.T) {
	r := New()
	a, b, c := r.Loop("watch: events"), r.Loop("push: t1"), r.Loop("push: t2")
	a.Busy()
	b.Busy()
	c.Busy()
	t0 := time.Unix(1000, 0)
	r.Stuck(t0, time.Second)
	c.Idle()
	got := r.Stuck(t0.Add(2*time.Second), time.Second)
	want := []string{"push: t1 (busy for 2s)", "watch: events (busy for 2s)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("Stuck = %q, want %q", got, want)
	}
}

func TestNilRegistryTracksNothing(t *testing.T) {
	var r *Registry
	l := r.Loop("x")
	l.Busy()
	l.Idle()
	l.Stop()
	if got := r.Stuck(time.Now(), 0); got != nil {
		t.Fatalf("Stuck = %q", got)
	}
}

// TestPingStopsWhileALoopIsStuck runs the pinger for real: pings while the
// loops work, none while one is stuck, pings again once it moves on.
func TestPingStopsWhileALoopIsStuck(t *testing.T) {
	r := New()
	worker := r.Loop("worker")
	var pings atomic.Int64
	statuses := make(chan string, 10)
	log := testutil.QuietLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Ping(ctx, 10*time.Millisecond, 100*time.Millisecond, func() error { pings.Add(1); return nil }, func(s string) { statuses <- s }, log)
	}()
	defer func() { cancel(); <-done }()

	// Working: short pieces of work, pings go on.
	waitPings := func(what string) {
		t.Helper()
		from := pings.Load()
		deadline := time.Now().Add(5 * time.Second)
		for pings.Load() < from+5 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no pings", what)
			}
			worker.Busy()
			time.Sleep(time.Millisecond)
			worker.Idle()
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPings("working")

	// Stuck: busy for good. Pings stop within the bound plus a tick or two.
	worker.Busy()
	time.Sleep(250 * time.Millisecond)
	before := pings.Load()
	time.Sleep(300 * time.Millisecond)
	if after := pings.Load(); after != before {
		t.Fatalf("a loop stuck for 550 ms (bound 100 ms): %d pings went on", after-before)
	}
	if s := <-statuses; !strings.HasPrefix(s, "stuck: worker (busy for") {
		t.Fatalf("status %q, want the stuck loop named", s)
	}

	worker.Idle()
	waitPings("after the loop moved on")
	if s := <-statuses; s != "running" {
		t.Fatalf("status %q after the loop moved on", s)
	}
}
