package queue

// Outcomes: what a push's result does to the records it claimed. Ack removes
// them (unless changed since), Fail keeps them with one more attempt, Release
// returns them untouched.

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Ack removes the records a push confirmed, except those whose path changed
// again since they were claimed: those stay to be pushed once more. Acks of
// concurrent pushes share one commit (bbolt's Batch).
func (q *Queue) Ack(target string, items []Item) error {
	q.mu.Lock()
	active := q.active
	q.mu.Unlock()
	removed := 0
	err := q.updateClaimed(target, items, true, func(tb *bolt.Bucket, recs []claimed) error {
		pb, ob := tb.Bucket(pathsBucket), tb.Bucket(orderBucket)
		removed = 0 // Batch may run this again
		full := false
		for _, c := range recs {
			if c.rec.Gen != c.item.Gen {
				// Changed again during the push: it stays, but the rename
				// the push was asked for has been done or tried.
				if c.item.From != "" && c.rec.From == c.item.From {
					c.rec.From = ""
					if err := pb.Put(c.key, c.rec.encode()); err != nil {
						return err
					}
				}
				continue
			}
			if err := pb.Delete(c.key); err != nil {
				return err
			}
			if err := ob.Delete(seqKey(c.rec.Seq)); err != nil {
				return err
			}
			removed++
			full = full || c.item.Path == FullSync
		}
		if full {
			return clearMissed(tb.Tx(), active)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack %d paths for %s: %w", len(items), target, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	ts := q.targets[target]
	ts.pending -= removed
	if len(ts.parked) > 0 {
		for _, it := range items {
			delete(ts.parked, it.Path)
		}
	}
	if removed < len(items) {
		// Some paths changed during the push; wake the pusher for them.
		select {
		case ts.notify <- struct{}{}:
		default:
		}
	}
	return nil
}

// Fail keeps the records of a failed push with one more attempt. The
// reason is kept once per target (LastFailure), and in the record only for
// a push of one path, whose own error it is: a target down for hours would
// otherwise store the same line in every one of its records.
func (q *Queue) Fail(target string, items []Item, f Failure) error {
	now := time.Now()
	err := q.updateClaimed(target, items, false, func(tb *bolt.Bucket, recs []claimed) error {
		if err := tb.Put(lastFailureKey, []byte(f.Error)); err != nil {
			return err
		}
		pb := tb.Bucket(pathsBucket)
		for _, c := range recs {
			rec := c.rec
			rec.Attempts++
			if rec.FirstFail.IsZero() {
				rec.FirstFail = now
			}
			rec.LastFail = now
			rec.ExitCode = f.ExitCode
			rec.Error = ""
			if len(items) == 1 {
				rec.Error = f.Error
			}
			rec.RetryAt = time.Time{}
			if f.Park > 0 {
				rec.RetryAt = now.Add(f.Park)
			}
			if err := pb.Put(c.key, rec.encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record failure of %d paths for %s: %w", len(items), target, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	ts := q.targets[target]
	for _, it := range items {
		if f.Park > 0 {
			ts.parked[it.Path] = struct{}{}
		} else {
			delete(ts.parked, it.Path)
		}
	}
	return nil
}

// claimed is a claimed item with its record as the transaction found it.
type claimed struct {
	item Item
	key  []byte
	rec  Record
}

// updateClaimed runs fn, in one write transaction (shared with concurrent
// callers when batch is set: fn must then be idempotent), on the records
// the claimed items still have, then releases the items. Released only
// after the commit, so no claim can take a record this is about to remove.
func (q *Queue) updateClaimed(target string, items []Item, batch bool, fn func(tb *bolt.Bucket, recs []claimed) error) error {
	defer func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		ts := q.targets[target]
		for _, it := range items {
			ts.release(it.Path)
		}
	}()
	update := q.db.Update
	if batch {
		update = q.db.Batch
	}
	return update(func(tx *bolt.Tx) error {
		tb := tx.Bucket(targetBucketName(target))
		pb := tb.Bucket(pathsBucket)
		recs := make([]claimed, 0, len(items))
		for _, it := range items {
			key := []byte(it.Path)
			v := pb.Get(key)
			if v == nil {
				continue
			}
			c := claimed{item: it, key: key}
			if err := c.rec.decode(v); err != nil {
				return fmt.Errorf("decode record %q: %w", it.Path, err)
			}
			recs = append(recs, c)
		}
		return fn(tb, recs)
	})
}

// Release returns claimed items to the queue untouched, as after a push that
// was cancelled before it could finish.
func (q *Queue) Release(target string, items []Item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ts := q.targets[target]
	for _, it := range items {
		ts.release(it.Path)
	}
}
