package main

// The queue file damaged between two runs, and the changes that may have
// been missed: every test ends with the target equal to the source.

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// pathsRoot returns the page that holds the root of the first target's
// records.
func pathsRoot(t *testing.T, db string) int64 {
	t.Helper()
	b, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true})
	must(t, err)
	defer b.Close()
	var root int64
	err = b.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			if strings.HasPrefix(string(name), "t:") && root == 0 {
				root = int64(bk.Bucket([]byte("paths")).Root())
			}
			return nil
		})
	})
	must(t, err)
	if root == 0 {
		t.Fatal("the records are inline in their bucket: queue more of them")
	}
	return root
}

// usedSize returns how much of the queue file bbolt uses.
func usedSize(t *testing.T, db string) int64 {
	t.Helper()
	b, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true})
	must(t, err)
	defer b.Close()
	var size int64
	must(t, b.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }))
	return size
}

// TestDamagedQueueFile: changes are queued for a target that is down, the
// daemon stops, and the queue file is damaged in one of the ways a disk or
// an operator damages it. status and retry say it is damaged, exit 1, and
// leave it as it is; the next start says which file and what is wrong,
// moves it aside, starts a fresh queue and pushes the whole tree, so the
// changes recorded only in the damaged file still arrive. (Before, bbolt
// panicked in every command, exit 2; an empty file was taken as an empty
// queue, and the changes never arrived.)
func TestDamagedQueueFile(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	cases := []struct {
		name    string
		damage  func(t *testing.T, db string)
		problem string
	}{
		{"zero length", func(t *testing.T, db string) { must(t, os.Truncate(db, 0)) }, "empty"},
		{"truncated to half", func(t *testing.T, db string) {
			// Half of what is in use: bbolt grows the file ahead of it.
			must(t, os.Truncate(db, usedSize(t, db)/2))
		}, "cut short"},
		{"4 KiB of random bytes in a page of records", func(t *testing.T, db string) {
			page := pathsRoot(t, db)
			junk := make([]byte, 4096)
			rand.Read(junk)
			f, err := os.OpenFile(db, os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt(junk, page*4096)
			must(t, err)
			must(t, f.Close())
		}, "page"},
		{"records that do not decode", func(t *testing.T, db string) {
			b, err := bolt.Open(db, 0o600, &bolt.Options{NoFreelistSync: true})
			must(t, err)
			err = b.Update(func(tx *bolt.Tx) error {
				return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
					if !strings.HasPrefix(string(name), "t:") {
						return nil
					}
					pb := bk.Bucket([]byte("paths"))
					var keys [][]byte
					_ = pb.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil })
					for _, k := range keys[:len(keys)/2] {
						if err := pb.Put(k, []byte("garbage")); err != nil {
							return err
						}
					}
					return nil
				})
			})
			must(t, err)
			must(t, b.Close())
		}, "does not decode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{targets: 1, backoffMax: "10m"})
			down := e.targets[0]
			down.Stop()
			p := e.start()
			// Enough records that they fill pages of their own.
			for i := 0; i < 300; i++ {
				e.write(strings.Repeat("n", 40)+string(rune('a'+i%26))+strings.Repeat("x", i%7)+"-"+strconv.Itoa(i), "queued while the target was down "+strconv.Itoa(i))
			}
			waitFailed(t, e, down.Module)
			must(t, p.Signal(syscall.SIGTERM))
			if code, err := p.Wait(20 * time.Second); err != nil || code != 0 {
				t.Fatalf("stop: exit %d, %v:\n%s", code, err, tail(p.Output(), 3000))
			}
			if st := targetStatus(t, e.status(), down.Module); st.Pending != 300 {
				t.Fatalf("before the damage: %+v", st)
			}
			tc.damage(t, e.db)
			before, err := os.ReadFile(e.db)
			must(t, err)
			for _, sub := range []string{"status", "retry"} {
				code, out := e.tool(sub)
				out = strings.TrimRight(out, "\n")
				if code != 1 || strings.Contains(out, "\n") || !strings.Contains(out, e.db) || !strings.Contains(out, "damaged") || !strings.Contains(out, tc.problem) {
					t.Fatalf("sersyncd %s on the damaged file: exit %d; want 1 and one line naming %s, damage and %q:\n%s", sub, code, e.db, tc.problem, out)
				}
				if after, _ := os.ReadFile(e.db); !bytes.Equal(before, after) {
					t.Fatalf("sersyncd %s changed the damaged file", sub)
				}
			}
			down.Start()
			p = e.start() // without -r
			e.converge(30*time.Second, "after a start with the damaged queue file")
			out := p.Output()
			var line string
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "is damaged") {
					line = l
				}
			}
			if !strings.Contains(line, e.db) || !strings.Contains(line, tc.problem) || !strings.Contains(line, "moved it to "+e.db+".damaged-") || !strings.Contains(line, "pushing the whole tree") {
				t.Fatalf("no one line naming the file, the damage and what is done:\n%s", tail(out, 3000))
			}
			aside, _ := filepath.Glob(e.db + ".damaged-*")
			if len(aside) != 1 {
				t.Fatalf("damaged file kept as %q", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); !bytes.Equal(kept, before) {
				t.Fatal("the file moved aside is not the damaged file as it was")
			}
			t.Log(line)
		})
	}
}

// TestDegradedStopLeavesFullPushOwed: a daemon short of inotify watches
// stops cleanly after a change in a directory it could not watch. Before,
// the next start, with watches enough, never pushed that change: the
// periodic full push of the degraded mode lived in memory only. Now the
// stop leaves the mark of missed changes and the next start, without -r,
// pushes the tree.
func TestDegradedStopLeavesFullPushOwed(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1})
	for i := 0; i < 30; i++ {
		must(t, os.Mkdir(e.path(fmt.Sprintf("d%02d", i)), 0o755))
	}
	restore := setSysctl(t, "/proc/sys/fs/inotify/max_user_watches", testutil.InotifyWatchesInUse()+5)
	p := e.start()
	restore()
	if !strings.Contains(p.Output(), "some directories cannot be watched") {
		t.Skipf("the daemon found watches enough (freed by other processes meanwhile?):\n%s", p.Output())
	}
	// The empty directories arrive only by the full push of a degraded start.
	e.converge(10*time.Second, "the full push at a degraded start")
	e.write("d29/f", "in a directory without a watch")
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v:\n%s", code, err, tail(p.Output(), 3000))
	}
	p = e.start() // without -r, and with watches enough
	e.converge(10*time.Second, "after a clean stop in degraded mode")
	if !strings.Contains(p.Output(), "changes may have been missed: some directories have no inotify watch") {
		t.Errorf("the start does not say why it pushes the whole tree:\n%s", tail(p.Output(), 3000))
	}
}

// TestOverflowWhileTargetDownThenRestart: the kernel's event queue
// overflows while the target is down, and the daemon is stopped cleanly
// before it could push anything: the mark of missed changes outlives the
// stop, and a start without -r brings the target equal to the source.
func TestOverflowWhileTargetDownThenRestart(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "10m"})
	e.targets[0].Stop()
	restore := setSysctl(t, "/proc/sys/fs/inotify/max_queued_events", 64)
	p := e.start()
	restore()
	for i := 0; i < 20; i++ {
		must(t, os.MkdirAll(e.path(fmt.Sprintf("flood/d%02d", i)), 0o755))
		for j := 0; j < 100; j++ {
			e.write(fmt.Sprintf("flood/d%02d/f%03d", i, j), fmt.Sprint(i, j))
		}
	}
	waitLog(t, e, 15*time.Second, "overflowed")
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v:\n%s", code, err, tail(p.Output(), 3000))
	}
	e.targets[0].Start()
	p = e.start() // without -r
	e.converge(30*time.Second, "after the overflow and a restart")
	if !strings.Contains(p.Output(), "changes may have been missed: the inotify queue overflowed") {
		t.Errorf("the start does not say why it pushes the whole tree:\n%s", tail(p.Output(), 3000))
	}
}
