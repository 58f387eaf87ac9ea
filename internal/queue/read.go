package queue

// Reads: counts and walks of a target's records for status, metrics and the
// tools; none changes the queue.

import (
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Pending returns how many records target has, in flight included.
func (q *Queue) Pending(target string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ts, ok := q.targets[target]; ok {
		return ts.pending
	}
	return 0
}

// Records calls fn for every record of target in queue order, stopping early
// when fn returns false. Values are copies, safe to keep.
func (q *Queue) Records(target string, fn func(path string, rec Record) bool) error {
	return q.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(targetBucketName(target))
		if tb == nil {
			return fmt.Errorf("read queue: unknown target %q", target)
		}
		pb, ob := tb.Bucket(pathsBucket), tb.Bucket(orderBucket)
		c := ob.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			raw := pb.Get(v)
			if raw == nil {
				continue
			}
			var rec Record
			if err := rec.decode(raw); err != nil {
				return fmt.Errorf("decode record %q: %w", v, err)
			}
			if !fn(string(v), rec) {
				return nil
			}
		}
		return nil
	})
}

// Stats summarises one target's records.
type Stats struct {
	Pending      int       // records waiting, failed ones included
	Failed       int       // records whose last push failed
	OldestQueued time.Time // when the oldest waiting change was first queued
}

// Stats reads target's records; it walks them all, so it is for status
// queries, not hot paths.
func (q *Queue) Stats(target string) (Stats, error) {
	var st Stats
	err := q.Records(target, func(_ string, rec Record) bool {
		st.Pending++
		if rec.Failed() {
			st.Failed++
		}
		if st.OldestQueued.IsZero() || rec.Queued.Before(st.OldestQueued) {
			st.OldestQueued = rec.Queued
		}
		return true
	})
	return st, err
}

// LastFailure is why target's last failed push failed, as Fail stored it;
// for a queue written before it kept one, the reason the first failed
// record holds. Empty when nothing failed.
func (q *Queue) LastFailure(target string) (string, error) {
	var reason string
	err := q.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(targetBucketName(target))
		if tb == nil {
			return fmt.Errorf("read queue: unknown target %q", target)
		}
		reason = string(tb.Get(lastFailureKey))
		return nil
	})
	if err != nil || reason != "" {
		return reason, err
	}
	err = q.Records(target, func(_ string, rec Record) bool {
		reason = rec.Error
		return reason == ""
	})
	return reason, err
}

// Failing counts target's records whose last push failed, and how many of
// those a push holds now (its outcome is not known yet). It walks them all.
func (q *Queue) Failing(target string) (failed, held int, err error) {
	// The walk runs without q.mu, which every claim and ack of every target
	// takes: on a snapshot of what is in flight.
	q.mu.Lock()
	ts, ok := q.targets[target]
	var inflight map[string]uint64
	if ok {
		inflight = maps.Clone(ts.inflight)
	}
	q.mu.Unlock()
	if !ok {
		return 0, 0, fmt.Errorf("read queue: unknown target %q", target)
	}
	err = q.Records(target, func(path string, rec Record) bool {
		if rec.Failed() {
			failed++
			if _, ok := inflight[path]; ok {
				held++
			}
		}
		return true
	})
	return failed, held, err
}

// OldestQueued returns when the oldest waiting change of target was first
// queued, zero when none waits. It reads one record.
func (q *Queue) OldestQueued(target string) (time.Time, error) {
	var t time.Time
	err := q.Records(target, func(_ string, rec Record) bool {
		t = rec.Queued
		return false
	})
	return t, err
}
