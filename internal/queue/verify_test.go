package queue

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fullQueue makes a closed queue file of n records for each of two
// targets, a third of them failed, and returns its path.
func fullQueue(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path, []string{"A", "B"})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for i := 0; i < n; i++ {
		paths = append(paths, fmt.Sprintf("dir%02d/file-%05d", i%17, i))
	}
	mustAdd(t, q, paths...)
	items := mustClaim(t, q, "A", n/3)
	if err := q.Fail("A", items, Failure{ExitCode: 23, Error: "partial transfer"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// openDamaged opens path as a tool and as the daemon and wants both to say
// it is damaged, naming problem, and to leave the file byte for byte as it
// was.
func openDamaged(t *testing.T, path, problem string) {
	t.Helper()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(string, []string) (*Queue, error){OpenTool, Open} {
		q, err := open(path, []string{"A", "B"})
		if err == nil {
			q.Close()
			t.Fatalf("opened a damaged file (want %q)", problem)
		}
		var d *DamagedError
		if !errors.As(err, &d) || !strings.Contains(err.Error(), problem) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v; want a DamagedError naming %s and %q", err, path, problem)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatal("opening a damaged file changed it")
		}
	}
}

// pageCount returns the page size and the number of pages of path.
func pageCount(t *testing.T, path string) (pageSize int, pages int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return 4096, int(fi.Size() / 4096)
}

func TestDamagedFiles(t *testing.T) {
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string)
		problem string
	}{
		{"zero length", func(t *testing.T, path string) { must(t, os.Truncate(path, 0)) }, "empty"},
		{"truncated to half", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			must(t, err)
			must(t, os.Truncate(path, fi.Size()/2))
		}, "cut short"},
		{"both header pages overwritten", func(t *testing.T, path string) {
			writeAt(t, path, 0, bytes.Repeat([]byte{0xAB}, 8192))
		}, "header"},
		{"4 KiB of random bytes in a record page", func(t *testing.T, path string) {
			writeAt(t, path, int64(firstLeafOf(t, path))*4096, randomPage(rand.New(rand.NewSource(1))))
		}, "page"},
		{"a record that does not decode", func(t *testing.T, path string) {
			boltPut(t, path, "A", "dir00/file-00000", []byte{9, 9, 9})
		}, `record "dir00/file-00000" does not decode`},
		{"a record missing from the queue order", func(t *testing.T, path string) {
			rec := Record{Seq: 1, Gen: 1, Queued: time.Now()}
			boltPut(t, path, "B", "nowhere", rec.encode())
		}, `record "nowhere" is missing from the queue order`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := fullQueue(t, 3000)
			tc.damage(t, path)
			openDamaged(t, path, tc.problem)
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(b, off)
	must(t, err)
	must(t, f.Close())
}

func randomPage(rng *rand.Rand) []byte {
	b := make([]byte, 4096)
	rng.Read(b)
	return b
}

// boltPut writes one raw value into target's paths bucket, as damage that
// leaves bbolt's own structure intact.
func boltPut(t *testing.T, path, target, key string, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true})
	must(t, err)
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(targetBucketName(target)).Bucket(pathsBucket).Put([]byte(key), value)
	})
	must(t, err)
	must(t, db.Close())
}

// reachable returns the pages the intact file uses, as verify walks them.
func reachable(t *testing.T, path string) map[uint64]bool {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	pr, err := readMeta(f, fi.Size())
	must(t, err)
	must(t, pr.walkFile())
	return pr.seen
}

// firstLeafOf returns the first leaf page in use after the buckets' own.
func firstLeafOf(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	used := reachable(t, path)
	for id := uint64(4); id*4096 < uint64(len(b)); id++ {
		if used[id] && le.Uint16(b[id*4096+8:]) == leafPage && le.Uint16(b[id*4096+10:]) > 10 {
			return id
		}
	}
	t.Fatal("no leaf page of records")
	return 0
}

// TestEveryPageDamaged overwrites each page of a queue file in turn with
// random bytes: a page in use is always found damaged, a free page never
// is, and nothing panics (bbolt panicked on 69 of 128 pages of such a file).
// Then random spans of random pages, with random bytes, zeros or flipped
// bits, over many seeds: each open is an error or a queue that works.
func TestEveryPageDamaged(t *testing.T) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		t.Setenv("TMPDIR", "/dev/shm") // the opens fsync: seconds on a disk
	}
	intact := fullQueue(t, 1000)
	orig, err := os.ReadFile(intact)
	must(t, err)
	used := reachable(t, intact)
	_, pages := pageCount(t, intact)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	path := filepath.Join(t.TempDir(), "damaged.db")
	damagedUsed, start := 0, time.Now()
	for id := 2; id < pages; id++ {
		b := bytes.Clone(orig)
		copy(b[id*4096:], randomPage(rng))
		must(t, os.WriteFile(path, b, 0o600))
		err := tryOpen(t, path)
		var d *DamagedError
		switch {
		case used[uint64(id)] && !errors.As(err, &d):
			t.Fatalf("page %d (in use) overwritten: err = %v, want damaged", id, err)
		case !used[uint64(id)] && err != nil:
			t.Fatalf("page %d (free) overwritten: %v", id, err)
		case id%50 == 0 && err != nil:
			t.Logf("page %d: %v", id, err)
		}
		if used[uint64(id)] {
			damagedUsed++
		}
	}
	t.Logf("%d pages, %d in use, each found damaged when overwritten (%s)", pages, damagedUsed, time.Since(start).Round(time.Millisecond))
	seeds := 150
	if testing.Short() {
		seeds = 50
	}
	found := 0
	for seed := 0; seed < seeds; seed++ {
		rng := rand.New(rand.NewSource(int64(seed)))
		b := bytes.Clone(orig)
		id := 2 + rng.Intn(pages-2)
		off := id*4096 + rng.Intn(4096)
		n := 1 + rng.Intn(id*4096+4096-off)
		switch rng.Intn(3) {
		case 0:
			rng.Read(b[off : off+n])
		case 1:
			clear(b[off : off+n])
		case 2:
			for i := 0; i < 1+rng.Intn(8); i++ {
				b[off+rng.Intn(n)] ^= 1 << rng.Intn(8)
			}
		}
		must(t, os.WriteFile(path, b, 0o600))
		var d *DamagedError
		if err := tryOpen(t, path); errors.As(err, &d) {
			if found++; found%25 == 0 {
				t.Logf("seed %d: %v", seed, err)
			}
		} else if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	t.Logf("%d seeds: %d found damaged, the others opened and worked (%s in all)", seeds, found, time.Since(start).Round(time.Millisecond))
}

// tryOpen opens path and, when that works, uses the queue the way the
// daemon and the tools do; any panic fails the test.
func tryOpen(t *testing.T, path string) error {
	t.Helper()
	q, err := Open(path, []string{"A", "B"})
	if err != nil {
		return err
	}
	defer q.Close()
	for _, target := range []string{"A", "B"} {
		if _, err := q.Stats(target); err != nil {
			return err
		}
		items, err := q.Claim(target, 100)
		if err != nil {
			return err
		}
		if err := q.Ack(target, items); err != nil {
			return err
		}
	}
	return q.Add([]string{"new"})
}
