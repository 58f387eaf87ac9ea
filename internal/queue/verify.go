package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	boltErrors "go.etcd.io/bbolt/errors"
)

// DamagedError says that the queue file cannot be trusted, and why. Open
// leaves such a file as it is.
type DamagedError struct {
	Path    string
	Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("queue file %s is damaged: %s", e.Path, e.Problem)
}

// verify reads the whole of an existing queue file before bbolt is given it
// for writing. bbolt trusts its pages: a damaged one panics on an assertion,
// faults on a page past the end of a truncated file (a SIGBUS kills the
// process, recover or not), or loops on a page that refers to itself; its
// own Tx.Check runs in goroutines of its own, where nothing can recover
// either. So the page tree is walked here first with plain reads, every
// offset checked and every page visited once; only then are the records
// read through bbolt and decoded, under recover and SetPanicOnFault.
//
// It holds a shared lock on the file meanwhile, so it never reads a file
// that a running daemon is writing (ErrLocked then), and it writes nothing.
func verify(path string, wait time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open queue %s: %w", path, err)
	}
	defer f.Close()
	if err := lockShared(f, wait); err != nil {
		return fmt.Errorf("open queue %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open queue %s: %w", path, err)
	}
	damaged := func(format string, args ...any) error {
		return &DamagedError{Path: path, Problem: fmt.Sprintf(format, args...)}
	}
	if fi.Size() == 0 {
		// bbolt would make it a fresh, empty queue: whatever it held would
		// be lost without a word.
		return damaged("it is empty (0 bytes)")
	}
	pr, err := readMeta(f, fi.Size())
	if err != nil {
		return damaged("%v", err)
	}
	if err := protect(pr.walkFile); err != nil {
		return damaged("%v", err)
	}
	if err := protect(func() error { return decodeAll(path, wait) }); err != nil {
		if errors.Is(err, ErrLocked) {
			return fmt.Errorf("open queue %s: %w", path, err)
		}
		return damaged("%v", err)
	}
	return nil
}

// lockShared waits up to wait for a shared lock: a daemon holds an
// exclusive one.
func lockShared(f *os.File, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock: %w", err)
		}
		if time.Now().After(deadline) {
			return ErrLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// protect runs fn, turning a panic, or a fault on mapped memory, into an
// error.
func protect(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading it failed: %v", r)
		}
	}()
	return fn()
}

// decodeAll reads every record through bbolt: each must decode, and each
// must have its entry in the order bucket, which is how Claim finds it (a
// record without one would be pending for ever and never pushed).
func decodeAll(path string, wait time.Duration) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: wait})
	if err != nil {
		if errors.Is(err, boltErrors.ErrTimeout) {
			return ErrLocked
		}
		return fmt.Errorf("bbolt cannot open it: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		c := tx.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil {
				return fmt.Errorf("its top level holds %q, which is not a bucket", k)
			}
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !bytes.HasPrefix(name, []byte("t:")) {
				return nil
			}
			target := strings.TrimPrefix(string(name), "t:")
			pb, ob := b.Bucket(pathsBucket), b.Bucket(orderBucket)
			if pb == nil || ob == nil {
				return fmt.Errorf("target %q has no %s or %s bucket", target, pathsBucket, orderBucket)
			}
			seq := b.Sequence()
			return pb.ForEach(func(k, v []byte) error {
				var rec Record
				if err := rec.decode(v); err != nil {
					return fmt.Errorf("target %q: record %q does not decode", target, k)
				}
				if rec.Seq == 0 || rec.Seq > seq {
					return fmt.Errorf("target %q: record %q has sequence %d, beyond its bucket's %d", target, k, rec.Seq, seq)
				}
				if o := ob.Get(seqKey(rec.Seq)); !bytes.Equal(o, k) {
					return fmt.Errorf("target %q: record %q is missing from the queue order", target, k)
				}
				return nil
			})
		})
	})
}

// bbolt's file format (go.etcd.io/bbolt/internal/common), little-endian on
// every platform sersyncd builds for.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	elementSize     = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeader    = 16 // root pgid u64, sequence u64
	branchPage      = 0x01
	leafPage        = 0x02
	freelistPage    = 0x10
	bucketLeafFlag  = 0x01
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	metaChecksumLen = 56 // the meta's bytes before its checksum
	noFreelist      = ^uint64(0)
	maxDepth        = 64
)

var le = binary.LittleEndian

type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // pages in use: ids below it
	txid     uint64
}

func parseMeta(p []byte) (meta, bool) {
	if len(p) < pageHeaderSize+metaChecksumLen+8 {
		return meta{}, false
	}
	m := p[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:metaChecksumLen])
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion || h.Sum64() != le.Uint64(m[metaChecksumLen:]) {
		return meta{}, false
	}
	return meta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// pageReader reads the pages of one file, each at most once.
type pageReader struct {
	f        *os.File
	meta     meta
	pageSize uint64
	seen     map[uint64]bool
}

// readMeta picks the meta page bbolt would use: the valid one of the
// higher transaction.
func readMeta(f *os.File, size int64) (*pageReader, error) {
	head := make([]byte, 4096)
	n, _ := f.ReadAt(head, 0)
	m0, ok0 := parseMeta(head[:n])
	pageSize := int64(m0.pageSize)
	if !ok0 {
		pageSize = 4096 // bbolt's default; the second meta page says
	}
	var m1 meta
	ok1 := false
	for _, ps := range []int64{pageSize, 4096, 8192, 16384, 32768, 65536} {
		if ps < 1024 || ps > 1<<16 {
			continue
		}
		b := make([]byte, 4096)
		n, _ := f.ReadAt(b, ps)
		if m1, ok1 = parseMeta(b[:n]); ok1 && int64(m1.pageSize) == ps {
			break
		}
		ok1 = false
	}
	var m meta
	switch {
	case ok0 && ok1 && m1.txid > m0.txid, !ok0 && ok1:
		m = m1
	case ok0:
		m = m0
	default:
		return nil, errors.New("neither of its two header (meta) pages is valid")
	}
	ps := uint64(m.pageSize)
	if ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 {
		return nil, fmt.Errorf("its header gives a page size of %d bytes", ps)
	}
	if m.hwm < 3 || m.hwm > uint64(size)/ps {
		return nil, fmt.Errorf("it is %d bytes, but its header counts %d pages of %d bytes: cut short", size, m.hwm, ps)
	}
	return &pageReader{f: f, meta: m, pageSize: ps, seen: map[uint64]bool{0: true, 1: true}}, nil
}

// page reads page id with its overflow pages.
func (r *pageReader) page(id uint64, from string) ([]byte, error) {
	if id < 2 || id >= r.meta.hwm {
		return nil, fmt.Errorf("%s refers to page %d, outside the %d pages in use", from, id, r.meta.hwm)
	}
	head := make([]byte, pageHeaderSize)
	if _, err := r.f.ReadAt(head, int64(id*r.pageSize)); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	if got := le.Uint64(head); got != id {
		return nil, fmt.Errorf("page %d says it is page %d", id, got)
	}
	overflow := uint64(le.Uint32(head[12:]))
	if id+overflow >= r.meta.hwm {
		return nil, fmt.Errorf("page %d runs over %d more pages, past the %d in use", id, overflow, r.meta.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if r.seen[i] {
			return nil, fmt.Errorf("page %d is used twice (%s refers to page %d)", i, from, id)
		}
		r.seen[i] = true
	}
	p := make([]byte, (1+overflow)*r.pageSize)
	if _, err := r.f.ReadAt(p, int64(id*r.pageSize)); err != nil {
		return nil, fmt.Errorf("read page %d: %w", id, err)
	}
	return p, nil
}

func (r *pageReader) walkFile() error {
	if r.meta.freelist != noFreelist {
		p, err := r.page(r.meta.freelist, "the header's freelist")
		if err != nil {
			return err
		}
		if le.Uint16(p[8:]) != freelistPage {
			return fmt.Errorf("the freelist, page %d, is not a freelist page", r.meta.freelist)
		}
	}
	return r.walkTree(r.meta.root, "the header", 0)
}

// walkTree checks the pages of one bucket's tree below page id.
func (r *pageReader) walkTree(id uint64, from string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d is nested %d deep", id, depth)
	}
	p, err := r.page(id, from)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("page %d", id)
	switch flags := le.Uint16(p[8:]); flags {
	case leafPage:
		return r.walkLeaf(p, where, depth)
	case branchPage:
		count := int(le.Uint16(p[10:]))
		if count == 0 {
			return fmt.Errorf("%s is a branch without elements", where)
		}
		var prev []byte
		for i := 0; i < count; i++ {
			e := pageHeaderSize + i*elementSize
			if e+elementSize > len(p) {
				return fmt.Errorf("%s: element %d lies past its end", where, i)
			}
			key, ok := slice(p, e, le.Uint32(p[e:]), le.Uint32(p[e+4:]))
			if !ok {
				return fmt.Errorf("%s: key %d lies past its end", where, i)
			}
			if i > 0 && bytes.Compare(prev, key) >= 0 {
				return fmt.Errorf("%s: keys out of order", where)
			}
			prev = key
			if err := r.walkTree(le.Uint64(p[e+8:]), where, depth+1); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%s (referred to by %s) has type %#x where a branch or leaf page belongs", where, from, flags)
	}
}

// walkLeaf checks a leaf page, of the file or inline in a bucket's value,
// and the buckets it holds.
func (r *pageReader) walkLeaf(p []byte, where string, depth int) error {
	count := int(le.Uint16(p[10:]))
	var prev []byte
	for i := 0; i < count; i++ {
		e := pageHeaderSize + i*elementSize
		if e+elementSize > len(p) {
			return fmt.Errorf("%s: element %d lies past its end", where, i)
		}
		flags, pos, ksize, vsize := le.Uint32(p[e:]), le.Uint32(p[e+4:]), le.Uint32(p[e+8:]), le.Uint32(p[e+12:])
		kv, ok := slice(p, e, pos, ksize+vsize)
		if !ok || uint64(ksize)+uint64(vsize) > uint64(^uint32(0)) {
			return fmt.Errorf("%s: entry %d lies past its end", where, i)
		}
		key, value := kv[:ksize], kv[ksize:]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return fmt.Errorf("%s: keys out of order", where)
		}
		prev = key
		if flags&bucketLeafFlag == 0 {
			continue
		}
		if len(value) < bucketHeader {
			return fmt.Errorf("%s: bucket %q has a short header", where, key)
		}
		sub := fmt.Sprintf("bucket %q", key)
		if root := le.Uint64(value); root != 0 {
			if err := r.walkTree(root, sub, depth+1); err != nil {
				return err
			}
			continue
		}
		// An inline bucket: its one leaf page is in the value.
		inline := value[bucketHeader:]
		if len(inline) < pageHeaderSize || le.Uint16(inline[8:]) != leafPage {
			return fmt.Errorf("%s: inline %s is not a leaf page", where, sub)
		}
		if depth+1 > maxDepth {
			return fmt.Errorf("%s is nested %d deep", sub, depth+1)
		}
		if err := r.walkLeaf(inline, sub, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// slice returns p[e+pos : e+pos+n] when it lies within p.
func slice(p []byte, e int, pos, n uint32) ([]byte, bool) {
	start := uint64(e) + uint64(pos)
	end := start + uint64(n)
	if end > uint64(len(p)) {
		return nil, false
	}
	return p[start:end], true
}
