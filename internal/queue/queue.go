// Package queue is sersyncd's durable change queue: one pending record per
// (target, path), kept in a bbolt file until that target has confirmed it.
//
// A record carries a generation that grows with every change of its path, so
// a path that changes while its push runs is pushed again instead of being
// acknowledged by a push that may have read the old content.
package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	boltErrors "go.etcd.io/bbolt/errors"

	"github.com/sersyncd/sersyncd/internal/change"
)

// FullSync is the path of the record that asks for a push of the whole tree.
// It conflicts with every other path, so it is claimed alone.
const FullSync = "."

var (
	metaBucket   = []byte("meta")
	stateKey     = []byte("state")
	pathsBucket  = []byte("paths")
	orderBucket  = []byte("order")
	stateRunning = []byte("running")
	stateClean   = []byte("clean")
	// missedKey, in the meta bucket: why changes may have been missed; set
	// with a full push for every target, removed when every target has
	// pushed the whole tree since.
	missedKey = []byte("missed")
	// lastFailureKey, in a target's bucket: why its last failed push failed.
	lastFailureKey = []byte("lastFailure")
)

// ErrLocked is returned by Open when another process holds the queue file.
var ErrLocked = errors.New("queue file is locked by another process (is sersyncd already running?)")

// openTimeout bounds the wait for the file's lock (bbolt's, and the
// shared one of the check before).
const openTimeout = 2 * time.Second

// Item is one claimed record: the change and the generation that was claimed.
type Item struct {
	change.Change
	Seq      uint64
	Gen      uint64
	Attempts int // failed pushes of the record so far
}

// Record is what the queue keeps per (target, path).
type Record struct {
	Seq       uint64
	Gen       uint64
	Queued    time.Time
	Attempts  int
	FirstFail time.Time
	LastFail  time.Time
	ExitCode  int
	Error     string
	// RetryAt parks a record that failed on its own (the target took the
	// rest of its batch): Claim skips it until then.
	RetryAt time.Time
	// Tree and From say how the path is pushed (change.Change).
	Tree bool
	From string
}

// Failed reports whether the record's last push attempt failed.
func (r Record) Failed() bool { return r.Attempts > 0 }

// Failure describes why a push failed; it is stored on every record of the batch.
type Failure struct {
	ExitCode int
	Error    string
	// Park, when positive, keeps the records out of Claim for that long.
	Park time.Duration
}

// Queue is safe for concurrent use.
type Queue struct {
	db *bolt.DB

	mu       sync.Mutex
	targets  map[string]*targetState
	active   []string // the targets Add records changes for
	unclean  bool
	missed   string // why changes may have been missed, as found at open
	tool     bool   // opened by OpenTool: the state marker is not ours
	closed   bool
	closeErr error
	addChunk int // addChunk, a field so a test can lower it for its queue
}

type targetState struct {
	inflight  map[string]uint64 // path -> claimed generation
	ancestors map[string]int    // directory -> in-flight paths below it
	pending   int
	notify    chan struct{}
	unparkAt  time.Time           // records that failed before this are no longer parked
	parked    map[string]struct{} // paths parked by this process, until pushed or changed again
}

// Open opens (creating it and its parent directories) the queue file and
// makes sure every target has its buckets. An existing file is read whole
// first: a damaged one is a *DamagedError, and left as it is. When the
// previous process stopped without Close (Unclean), changes it had seen but
// not yet committed are lost: Open marks them missed (see MarkMissed).
func Open(path string, targets []string) (*Queue, error) {
	return open(path, targets, true, openTimeout)
}

// OpenTool opens the queue for a command such as `sersyncd retry` that runs
// while no daemon does: it leaves the clean/unclean marker as it finds it,
// so a crash of the daemon is still detected at its next start.
func OpenTool(path string, targets []string) (*Queue, error) {
	return open(path, targets, false, openTimeout)
}

// missedUnclean is why changes may have been missed after a crash.
const missedUnclean = "a run did not stop cleanly (killed, crashed, power lost): changes it saw but had not queued are lost"

// open waits up to wait for the file's lock.
func open(path string, targets []string, daemon bool, wait time.Duration) (*Queue, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if err := verify(path, wait); err != nil {
			return nil, err
		}
	}
	var db *bolt.DB
	q := &Queue{targets: map[string]*targetState{}, tool: !daemon, addChunk: addChunk}
	added := map[string]int{}
	// verify found the file whole; a panic here would be damage done since,
	// and is an error too.
	err := protect(func() error {
		var err error
		// The freelist is rebuilt at open instead of written at every
		// commit: commits are the queue's hot path, opens are rare.
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: wait, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			if errors.Is(err, boltErrors.ErrTimeout) {
				return fmt.Errorf("open queue %s: %w", path, ErrLocked)
			}
			return fmt.Errorf("open queue %s: %w", path, err)
		}
		q.db = db
		err = db.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(metaBucket)
			if err != nil {
				return err
			}
			q.missed = string(meta.Get(missedKey))
			if s := meta.Get(stateKey); s != nil && string(s) != string(stateClean) {
				q.unclean = true
			}
			if err := q.createTargets(tx, targets); err != nil {
				return err
			}
			if !daemon {
				return nil
			}
			if q.unclean {
				// Every target owes a full push again, even one that had
				// pushed the whole tree for an older mark still standing:
				// what this crash lost came after that push.
				if q.missed == "" {
					q.missed = missedUnclean
				}
				if err := markMissedTx(tx, missedUnclean, targets, time.Now(), added); err != nil {
					return err
				}
			}
			return meta.Put(stateKey, stateRunning)
		})
		if err != nil {
			return fmt.Errorf("initialise queue %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		if db != nil {
			db.Close()
		}
		return nil, err
	}
	// Acks of several targets' pushes share a commit if they come within
	// this; short, since the target's next push waits for its ack.
	db.MaxBatchDelay = 2 * time.Millisecond
	q.counted(targets, added, nil) // a full push queued for an unclean stop
	return q, nil
}

// createTargets makes the buckets of targets not known yet and makes
// targets the set that Add records changes for.
func (q *Queue) createTargets(tx *bolt.Tx, targets []string) error {
	q.active = targets
	for _, name := range targets {
		if _, ok := q.targets[name]; ok {
			continue
		}
		b, err := tx.CreateBucketIfNotExists(targetBucketName(name))
		if err != nil {
			return err
		}
		paths, err := b.CreateBucketIfNotExists(pathsBucket)
		if err != nil {
			return err
		}
		if _, err := b.CreateBucketIfNotExists(orderBucket); err != nil {
			return err
		}
		q.targets[name] = &targetState{
			inflight:  map[string]uint64{},
			ancestors: map[string]int{},
			parked:    map[string]struct{}{},
			pending:   paths.Stats().KeyN,
			notify:    make(chan struct{}, 1),
		}
	}
	return nil
}

// SetTargets changes the targets that changes are recorded for (a reloaded
// config). The records of a target no longer listed stay in the file, to be
// pushed if it comes back.
func (q *Queue) SetTargets(targets []string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	err := q.db.Update(func(tx *bolt.Tx) error { return q.createTargets(tx, targets) })
	if err != nil {
		return fmt.Errorf("set queue targets: %w", err)
	}
	return nil
}

func targetBucketName(target string) []byte { return []byte("t:" + target) }

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

// Path returns the queue file's path.
func (q *Queue) Path() string { return q.db.Path() }

// Targets returns the targets changes are recorded for.
func (q *Queue) Targets() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.active...)
}

// Close marks the queue as cleanly closed and closes the file.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return q.closeErr
	}
	q.closed = true
	var err error
	if !q.tool {
		err = q.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(metaBucket).Put(stateKey, stateClean)
		})
	}
	if cerr := q.db.Close(); err == nil {
		err = cerr
	}
	q.closeErr = err
	return err
}

// Notify returns a channel that receives a value whenever records are added
// for target.
func (q *Queue) Notify(target string) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.targets[target].notify
}

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
				m := change.Merge(change.Change{Path: p, Tree: rec.Tree, From: rec.From}, ch)
				rec.Tree, rec.From = m.Tree, m.From
				rec.Gen++
				// A new change is pushed as such, not after the old
				// failure's park.
				rec.RetryAt = time.Time{}
			} else {
				seq, err := tb.NextSequence()
				if err != nil {
					return err
				}
				rec = Record{Seq: seq, Gen: 1, Queued: now, Tree: ch.Tree, From: ch.From}
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
			items = append(items, Item{Change: change.Change{Path: p, Tree: rec.Tree, From: rec.From},
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

// AddFullSync asks for a push of the whole tree to every target.
func (q *Queue) AddFullSync() error { return q.Add([]string{FullSync}) }

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
	err := q.db.View(func(tx *bolt.Tx) error {
		tb := tx.Bucket(targetBucketName(target))
		if tb == nil {
			return fmt.Errorf("read queue: unknown target %q", target)
		}
		pb := tb.Bucket(pathsBucket)
		c := tb.Bucket(orderBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			raw := pb.Get(v)
			if raw == nil {
				continue
			}
			var rec Record
			if err := rec.decode(raw); err != nil {
				return fmt.Errorf("decode record %q: %w", v, err)
			}
			t = rec.Queued
			return nil
		}
		return nil
	})
	return t, err
}
