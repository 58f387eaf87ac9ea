// Package pace tells a steady stream of batches from a short burst, so the
// watcher and the pusher can space their work under a stream (fewer fsyncs
// and rsync calls, each carrying more) without holding back a burst that
// is over: ten files written aside and renamed, a deploy of a few files.
package pace

import "time"

// StreamRun is how many batches in a row, each large and each close behind
// the one before, make a stream. Two are not enough: one burst often
// straddles two batches (a directory moved in, then a rename after it),
// and spacing the batch after them only delays the end of the burst.
const StreamRun = 3

// Stream remembers the recent batches of one producer; not safe for
// concurrent use.
type Stream struct {
	// Window: a batch that starts within Window of the one before is
	// back to back with it.
	Window time.Duration
	// MinBatch: a batch of fewer paths is no part of a stream.
	MinBatch int

	last time.Time
	run  int
}

// Note records a batch of n paths started at.
func (s *Stream) Note(at time.Time, n int) {
	switch {
	case n < s.MinBatch:
		s.run = 0
	case s.run > 0 && at.Sub(s.last) < s.Window:
		s.run++
	default:
		s.run = 1
	}
	s.last = at
}

// On reports whether the batches noted so far are a stream, so the next
// one should be spaced.
func (s *Stream) On() bool { return s.run >= StreamRun }

// Last is when the last batch started (zero before the first).
func (s *Stream) Last() time.Time { return s.last }
