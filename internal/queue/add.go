package queue

// Adding: changed paths become records (one per target and path, a generation
// bumped for a path already queued), in transactions of at most addChunk paths,
// and the targets' pushers are woken.

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sersyncd/sersyncd/internal/change"
)

// Add records that paths changed, for every target, in one transaction.
func (q *Queue) Add(paths []string) error {
	return q.add(nil, change.Of(paths))
}

// AddTarget records that paths changed, for one target only.
func (q *Queue) AddTarget(target string, paths []string) error {
	return q.AddTargets([]string{target}, paths)
}

// AddTargets records that paths changed, for these targets only (those
// of the source tree the paths are in).
func (q *Queue) AddTargets(targets []string, paths []string) error {
	if err := q.known(targets); err != nil {
		return fmt.Errorf("add to queue: %w", err)
	}
	return q.add(targets, change.Of(paths))
}

// AddChanges records changes, for these targets only (those of the source
// tree the paths are in). A change merges into a pending record of its
// path (change.Merge).
func (q *Queue) AddChanges(targets []string, changes []change.Change) error {
	if err := q.known(targets); err != nil {
		return fmt.Errorf("add to queue: %w", err)
	}
	return q.add(targets, changes)
}

// known says which of targets has no buckets (none: nil).
func (q *Queue) known(targets []string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range targets {
		if _, ok := q.targets[t]; !ok {
			return fmt.Errorf("unknown target %q", t)
		}
	}
	return nil
}

func (q *Queue) add(only []string, paths []change.Change) error {
	if len(paths) == 0 {
		return nil
	}
	now := time.Now()
	q.mu.Lock()
	targets := only
	if targets == nil {
		targets = q.active
	}
	q.mu.Unlock()
	// A big backlog (a full tree's worth of changes after a target came
	// back, an overflow) is written in several transactions: one of 100,000
	// records holds tens of MiB of bbolt nodes in memory until it commits.
	for len(paths) > q.addChunk {
		if err := q.addTx(targets, paths[:q.addChunk], now); err != nil {
			return err
		}
		paths = paths[q.addChunk:]
	}
	return q.addTx(targets, paths, now)
}

// addChunk is the most paths one transaction of Add writes.
const addChunk = 8192

func (q *Queue) addTx(targets []string, paths []change.Change, now time.Time) error {
	// The transaction runs without q.mu, so claims and acks of the pushers
	// are not held up by a commit's fsync; bbolt serialises the writes,
	// and a generation bumped meanwhile keeps an ack from removing it.
	added := map[string]int{}
	err := q.db.Update(func(tx *bolt.Tx) error {
		clear(added)
		return putPaths(tx, targets, paths, now, added)
	})
	if err != nil {
		return fmt.Errorf("add %d paths to queue: %w", len(paths), err)
	}
	q.counted(targets, added, paths)
	return nil
}

// putPaths records paths for targets in tx, counting new records in added.
func putPaths(tx *bolt.Tx, targets []string, paths []change.Change, now time.Time, added map[string]int) error {
	for _, name := range targets {
		tb := tx.Bucket(targetBucketName(name))
		pb, ob := tb.Bucket(pathsBucket), tb.Bucket(orderBucket)
		// Sequence keys only ever append, and each batch of paths comes
		// sorted: pages split full, not half full, so a backlog of
		// 100,000 records takes a third less file and mapped memory.
		ob.FillPercent, pb.FillPercent = 1.0, 0.9
		for _, ch := range paths {
			p := ch.Path
			key := []byte(p)
			var rec Record
			if v := pb.Get(key); v != nil {
				if err := rec.decode(v); err != nil {
					return fmt.Errorf("decode record %q: %w", p, err)
				}
				m := change.Merge(change.Change{Path: p, Tree: rec.Tree, Fresh: rec.Fresh, From: rec.From}, ch)
				rec.Tree, rec.Fresh, rec.From = m.Tree, m.Fresh, m.From
				rec.Gen++
				// A new change is pushed as such, not after the old
				// failure's park.
				rec.RetryAt = time.Time{}
			} else {
				seq, err := tb.NextSequence()
				if err != nil {
					return err
				}
				rec = Record{Seq: seq, Gen: 1, Queued: now, Tree: ch.Tree, Fresh: ch.Fresh, From: ch.From}
				if err := ob.Put(seqKey(seq), key); err != nil {
					return err
				}
				added[name]++
			}
			if err := pb.Put(key, rec.encode()); err != nil {
				return err
			}
		}
	}
	return nil
}

// counted adds what a commit added to the targets' counts and wakes them;
// the parks of the changed paths end.
func (q *Queue) counted(targets []string, added map[string]int, paths []change.Change) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, name := range targets {
		ts := q.targets[name]
		ts.pending += added[name]
		if len(ts.parked) > 0 {
			for _, p := range paths {
				delete(ts.parked, p.Path) // its park ended with the change
			}
		}
		select {
		case ts.notify <- struct{}{}:
		default:
		}
	}
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

// AddFullSync asks for a push of the whole tree to every target.
func (q *Queue) AddFullSync() error { return q.Add([]string{FullSync}) }
