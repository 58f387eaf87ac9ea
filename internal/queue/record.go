package queue

import (
	"encoding/binary"
	"errors"
	"time"
)

// A record is stored as varints rather than JSON: with 100,000 pending
// paths per target the encoding is most of the queue file, of the memory
// its mmap occupies, and of the CPU a commit costs. Version 2 adds how the
// path is pushed (change.Change's Tree, Fresh and From); version 1
// records, written before, still decode, as plain changes.
const (
	recordVersion1 = 1
	recordVersion  = 2
)

var errBadRecord = errors.New("malformed queue record")

func (r *Record) encode() []byte {
	b := make([]byte, 0, 48+len(r.Error))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.Seq)
	b = binary.AppendUvarint(b, r.Gen)
	b = appendTime(b, r.Queued)
	b = binary.AppendUvarint(b, uint64(r.Attempts))
	b = appendTime(b, r.FirstFail)
	b = appendTime(b, r.LastFail)
	b = binary.AppendVarint(b, int64(r.ExitCode))
	b = appendTime(b, r.RetryAt)
	b = binary.AppendUvarint(b, uint64(len(r.Error)))
	b = append(b, r.Error...)
	var flags uint64
	if r.Tree {
		flags |= flagTree
	}
	if r.Fresh {
		flags |= flagFresh
	}
	b = binary.AppendUvarint(b, flags)
	b = binary.AppendUvarint(b, uint64(len(r.From)))
	return append(b, r.From...)
}

// The flags of a version 2 record: Record.Tree and Record.Fresh.
const (
	flagTree  = 1
	flagFresh = 2
)

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// decode copies everything out of b, which bbolt owns only for the
// duration of the transaction.
func (r *Record) decode(b []byte) error {
	d := decoder{b: b}
	if len(b) == 0 || (b[0] != recordVersion && b[0] != recordVersion1) {
		return errBadRecord
	}
	version := b[0]
	d.b = b[1:]
	r.Seq = d.uvarint()
	r.Gen = d.uvarint()
	r.Queued = d.time()
	r.Attempts = int(d.uvarint())
	r.FirstFail = d.time()
	r.LastFail = d.time()
	r.ExitCode = int(d.varint())
	r.RetryAt = d.time()
	r.Error = d.bytes()
	r.Tree, r.Fresh, r.From = false, false, ""
	if version >= recordVersion {
		flags := d.uvarint()
		if flags&^(flagTree|flagFresh) != 0 {
			d.err = errBadRecord
		}
		r.Tree, r.Fresh = flags&flagTree != 0, flags&flagFresh != 0
		r.From = d.bytes()
	}
	if d.err != nil || len(d.b) != 0 {
		return errBadRecord
	}
	return nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed string.
func (d *decoder) bytes() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) time() time.Time {
	if v := d.varint(); v != 0 {
		return time.Unix(0, v)
	}
	return time.Time{}
}
