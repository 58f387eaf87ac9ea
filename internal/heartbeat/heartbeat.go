// Package heartbeat tells whether the loops that matter (the watcher's and
// the pusher's) still make progress, for systemd's watchdog: each loop marks
// when it starts a piece of work and when it is back waiting, and a loop
// that has been busy with one piece of work for too long is stuck. A loop
// waiting for events is alive however long it waits, so an idle daemon needs
// no wake-ups to prove it.
package heartbeat

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds the running loops. A nil *Registry is valid and tracks
// nothing: packages take one in their options and need no checks.
type Registry struct {
	mu    sync.Mutex
	loops map[*Loop]struct{}
}

// New returns an empty registry.
func New() *Registry { return &Registry{loops: make(map[*Loop]struct{})} }

// Loop is one loop's mark. Busy and Idle are called by the loop's own
// goroutine only; they cost an atomic load and store, no clock read, so a
// loop may call them once per event.
type Loop struct {
	reg  *Registry
	name string
	seq  atomic.Uint64 // odd while busy; each piece of work moves it on

	// Read and written by Stuck under reg.mu.
	seen      uint64
	seenSince time.Time
}

// Loop registers a loop under name (names need not be unique: a reload
// runs the new loops beside the old ones for a moment). Stop unregisters it.
func (r *Registry) Loop(name string) *Loop {
	if r == nil {
		return nil
	}
	l := &Loop{reg: r, name: name}
	r.mu.Lock()
	r.loops[l] = struct{}{}
	r.mu.Unlock()
	return l
}

// Busy marks the start of a piece of work.
func (l *Loop) Busy() {
	if l == nil {
		return
	}
	if v := l.seq.Load(); v%2 == 0 {
		l.seq.Store(v + 1)
	}
}

// Idle marks the loop back waiting (for events, a timer or a worker).
func (l *Loop) Idle() {
	if l == nil {
		return
	}
	if v := l.seq.Load(); v%2 == 1 {
		l.seq.Store(v + 1)
	}
}

// Stop unregisters the loop: it has ended.
func (l *Loop) Stop() {
	if l == nil {
		return
	}
	l.reg.mu.Lock()
	delete(l.reg.loops, l)
	l.reg.mu.Unlock()
}

// Stuck returns the loops busy with the same piece of work for at least
// bound, sorted, each as "name (busy for D)". A loop's time counts from the
// first call of Stuck that saw its current piece of work, so call it at
// least every bound/2 for a timely answer.
func (r *Registry) Stuck(now time.Time, bound time.Duration) []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var stuck []string
	for l := range r.loops {
		v := l.seq.Load()
		if v != l.seen || l.seenSince.IsZero() {
			l.seen, l.seenSince = v, now
		}
		if busy := now.Sub(l.seenSince); v%2 == 1 && busy >= bound {
			stuck = append(stuck, l.name+" (busy for "+busy.Round(time.Second).String()+")")
		}
	}
	sort.Strings(stuck)
	return stuck
}
