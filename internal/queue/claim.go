package queue

// Claiming: a pusher takes ready records oldest first, never two that overlap
// (same path, or one below the other) while either is in flight.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sersyncd/sersyncd/internal/change"
)

// Claim takes up to max ready records of target, oldest first, skipping any
// whose path is in flight or is an ancestor or descendant of a path in
// flight: two concurrent rsyncs must never touch the same subtree, or a
// deletion of a directory could race with the re-creation of a file in it.
// Parked records are skipped. A full sync is claimed alone.
func (q *Queue) Claim(target string, max int) ([]Item, error) {
	now := time.Now()
	return q.claim(target, max, func(ts *targetState, rec *Record) bool {
		return rec.RetryAt.IsZero() || !now.Before(rec.RetryAt) || !rec.LastFail.After(ts.unparkAt)
	})
}

// ClaimForReplay is Claim for a replay of a target's failures: parked
// records too, and records never tried (a target in backoff has not tried
// them), but not those that failed after the replay began, which keeps a
// replay from claiming again what it has just failed.
func (q *Queue) ClaimForReplay(target string, max int, began time.Time) ([]Item, error) {
	return q.claim(target, max, func(_ *targetState, rec *Record) bool {
		return !rec.Failed() || rec.LastFail.Before(began)
	})
}

func (q *Queue) claim(target string, max int, ready func(*targetState, *Record) bool) ([]Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, errors.New("claim from queue: queue is closed")
	}
	ts, ok := q.targets[target]
	if !ok {
		return nil, fmt.Errorf("claim from queue: unknown target %q", target)
	}
	var items []Item
	err := q.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(targetBucketName(target))
		pb, ob := tb.Bucket(pathsBucket), tb.Bucket(orderBucket)
		batch := map[string]bool{}
		c := ob.Cursor()
		for k, v := c.First(); k != nil && len(items) < max; k, v = c.Next() {
			p := string(v)
			full := p == FullSync
			if (full && len(items) > 0) || ts.conflicts(p) || batch[p] {
				continue
			}
			raw := pb.Get(v)
			if raw == nil {
				continue // order entry without a record: cleaned up by Ack
			}
			var rec Record
			if err := rec.decode(raw); err != nil {
				return fmt.Errorf("decode record %q: %w", p, err)
			}
			if !ready(ts, &rec) {
				continue
			}
			batch[p] = true
			items = append(items, Item{Change: change.Change{Path: p, Tree: rec.Tree, Fresh: rec.Fresh, From: rec.From},
				Seq: rec.Seq, Gen: rec.Gen, Attempts: rec.Attempts})
			if full {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim from queue: %w", err)
	}
	for _, it := range items {
		ts.take(it)
	}
	return items, nil
}

func (ts *targetState) conflicts(p string) bool {
	if _, ok := ts.inflight[p]; ok {
		return true
	}
	if ts.ancestors[p] > 0 {
		return true
	}
	for dir := parentDir(p); dir != ""; dir = parentDir(dir) {
		if _, ok := ts.inflight[dir]; ok {
			return true
		}
	}
	return false
}

func (ts *targetState) take(it Item) {
	ts.inflight[it.Path] = it.Gen
	for dir := parentDir(it.Path); dir != ""; dir = parentDir(dir) {
		ts.ancestors[dir]++
	}
}

func (ts *targetState) release(p string) {
	if _, ok := ts.inflight[p]; !ok {
		return
	}
	delete(ts.inflight, p)
	for dir := parentDir(p); dir != ""; dir = parentDir(dir) {
		if ts.ancestors[dir]--; ts.ancestors[dir] <= 0 {
			delete(ts.ancestors, dir)
		}
	}
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return ""
	}
	return p[:i]
}
