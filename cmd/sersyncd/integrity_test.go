package main

// The queue file damaged between two runs, and the changes that may have
// been missed: every test ends with the target equal to the source.

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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
	if testing.Short() {
		t.Skip("integration test")
	}
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
