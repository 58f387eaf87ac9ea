package queue

// Parks: a record that failed on its own waits out its park before it is
// claimed again; which paths are parked, per target, is kept in memory for the
// watcher (Parked), and read back from the file at start (LoadParks).

import (
	"time"
)

// LoadParks makes the parks that records of target carry from an earlier
// process known (Parked), and returns when the earliest of them ends (zero
// when none is parked): nothing else wakes a pusher for it. It walks every
// record, once per start.
func (q *Queue) LoadParks(target string) (time.Time, error) {
	now := time.Now()
	var next time.Time
	var parked []string
	err := q.Records(target, func(path string, rec Record) bool {
		if rec.RetryAt.After(now) {
			parked = append(parked, path)
			if next.IsZero() || rec.RetryAt.Before(next) {
				next = rec.RetryAt
			}
		}
		return true
	})
	if err != nil {
		return time.Time{}, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if ts := q.targets[target]; ts != nil {
		for _, p := range parked {
			ts.parked[p] = struct{}{}
		}
	}
	return next, nil
}

// Unpark makes every record that failed until now claimable at once.
func (q *Queue) Unpark(target string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ts, ok := q.targets[target]; ok {
		ts.unparkAt = time.Now()
	}
}

// Parked reports whether path's record is parked for some target: its
// last push failed on its own (rsync exit 23: unreadable, say) and it
// waits out its park. Any change of it may be the fix (a chmod, whatever
// the attrib switch says), so the watcher queues it again. Parks of an
// earlier process are known once LoadParks has read them.
func (q *Queue) Parked(path string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ts := range q.targets {
		if _, ok := ts.parked[path]; ok {
			return true
		}
	}
	return false
}

// ParkedFor is Parked for some targets only: a path is relative to its
// own tree, so "a" parked for one tree's targets says nothing about "a" in
// another.
func (q *Queue) ParkedFor(targets []string, path string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range targets {
		ts := q.targets[name]
		if ts == nil {
			continue
		}
		if _, ok := ts.parked[path]; ok {
			return true
		}
	}
	return false
}
