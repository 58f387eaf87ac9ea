package queue

// Missed changes: the durable mark that changes may have been missed (a crash,
// an overflow), with the full push it queues for every target, and its removal
// once each target has pushed the whole tree since.

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sersyncd/sersyncd/internal/change"
)

// missedUnclean is why changes may have been missed after a crash.
const missedUnclean = "a run did not stop cleanly (killed, crashed, power lost): changes it saw but had not queued are lost"

// Unclean reports whether the previous run ended without a clean Close.
func (q *Queue) Unclean() bool { return q.unclean }

// Missed says why changes may have been missed before this open ("" when
// none were): a full push of every target is queued for it, and the mark
// stays in the file until each has succeeded.
func (q *Queue) Missed() string { return q.missed }

// MarkMissed records, durably, that changes may have been missed, and why
// (the first reason is kept until the mark is cleared), and queues a push of
// the whole tree for every target; a full push already running for a target
// does not count, since it may have read the tree before what was missed.
// The mark is removed once every target has pushed the whole tree since
// (Ack), so a stop before that, clean or not, leaves the full push owed.
func (q *Queue) MarkMissed(why string) error {
	q.mu.Lock()
	targets := q.active
	q.mu.Unlock()
	return q.MarkMissedTargets(why, targets)
}

// MarkMissedTargets is MarkMissed for some targets only: those of the
// tree whose changes may have been missed (an overflow in one source tree
// owes a full push of its own targets, not of another tree's). The mark
// stays until every target still owes none.
func (q *Queue) MarkMissedTargets(why string, targets []string) error {
	if err := q.known(targets); err != nil {
		return fmt.Errorf("record that changes may have been missed: %w", err)
	}
	added := map[string]int{}
	err := q.db.Update(func(tx *bolt.Tx) error {
		clear(added)
		return markMissedTx(tx, why, targets, time.Now(), added)
	})
	if err != nil {
		return fmt.Errorf("record that changes may have been missed: %w", err)
	}
	q.counted(targets, added, nil)
	return nil
}

func markMissedTx(tx *bolt.Tx, why string, targets []string, now time.Time, added map[string]int) error {
	meta := tx.Bucket(metaBucket)
	if meta.Get(missedKey) == nil {
		if err := meta.Put(missedKey, []byte(why)); err != nil {
			return err
		}
	}
	return putPaths(tx, targets, []change.Change{{Path: FullSync}}, now, added)
}

// MissedNow reads the mark as it is in the file now ("" when none).
func (q *Queue) MissedNow() (string, error) {
	var why string
	err := q.db.View(func(tx *bolt.Tx) error {
		why = string(tx.Bucket(metaBucket).Get(missedKey))
		return nil
	})
	return why, err
}

// clearMissed removes the mark of missed changes once no target changes are
// recorded for still owes a full push. A target dropped from the config
// keeps its own record, to be pushed if it comes back.
func clearMissed(tx *bolt.Tx, active []string) error {
	meta := tx.Bucket(metaBucket)
	if meta.Get(missedKey) == nil {
		return nil
	}
	for _, name := range active {
		if tb := tx.Bucket(targetBucketName(name)); tb != nil && tb.Bucket(pathsBucket).Get([]byte(FullSync)) != nil {
			return nil
		}
	}
	return meta.Delete(missedKey)
}
