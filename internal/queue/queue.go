// Package queue is sersyncd's durable change queue: one pending record per
// (target, path), kept in a bbolt file until that target has confirmed it.
//
// A record carries a generation that grows with every change of its path, so
// a path that changes while its push runs is pushed again instead of being
// acknowledged by a push that may have read the old content.
package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// Tree, Fresh and From say how the path is pushed (change.Change).
	Tree  bool
	Fresh bool
	From  string
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
