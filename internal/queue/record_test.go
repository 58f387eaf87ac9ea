package queue

import (
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	now := time.Unix(1_800_000_000, 123456789)
	cases := []struct {
		name string
		rec  Record
	}{
		{"fresh", Record{Seq: 1, Gen: 1, Queued: now}},
		{"failed and parked", Record{Seq: 1 << 40, Gen: 7, Queued: now, Attempts: 3, FirstFail: now.Add(time.Second),
			LastFail: now.Add(time.Minute), ExitCode: 10, Error: "rsync exit 10 (error in socket I/O): \xff\n", RetryAt: now.Add(time.Hour)}},
		{"negative exit", Record{Seq: 2, Gen: 2, ExitCode: -1, Error: "run rsync: context canceled"}},
		{"tree", Record{Seq: 3, Gen: 1, Queued: now, Tree: true}},
		{"fresh tree", Record{Seq: 5, Gen: 1, Queued: now, Tree: true, Fresh: true}},
		{"renamed", Record{Seq: 4, Gen: 1, Queued: now, From: "old/na\nme", Tree: true, Error: "e"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got Record
			if err := got.decode(tc.rec.encode()); err != nil {
				t.Fatal(err)
			}
			if !got.Queued.Equal(tc.rec.Queued) || !got.FirstFail.Equal(tc.rec.FirstFail) ||
				!got.LastFail.Equal(tc.rec.LastFail) || !got.RetryAt.Equal(tc.rec.RetryAt) {
				t.Fatalf("times: got %+v, want %+v", got, tc.rec)
			}
			got.Queued, got.FirstFail, got.LastFail, got.RetryAt = tc.rec.Queued, tc.rec.FirstFail, tc.rec.LastFail, tc.rec.RetryAt
			if got != tc.rec {
				t.Fatalf("got %+v, want %+v", got, tc.rec)
			}
		})
	}
}

// TestRecordVersion1Decodes: records written before Tree and From existed
// (version 1: no flags, no From, the error last) decode as plain changes.
func TestRecordVersion1Decodes(t *testing.T) {
	rec := Record{Seq: 9, Gen: 3, Attempts: 1, ExitCode: 23, Error: "partial"}
	v2 := rec.encode()
	v1 := append([]byte{recordVersion1}, v2[1:len(v2)-2]...) // without flags 0 and From's length 0
	var got Record
	if err := got.decode(v1); err != nil {
		t.Fatalf("decode version 1: %v", err)
	}
	if got != rec {
		t.Fatalf("got %+v, want %+v", got, rec)
	}
	bad := append([]byte{}, v2...)
	bad[len(bad)-2] = 4 // an unknown flag
	if err := got.decode(bad); err == nil {
		t.Fatal("a record with an unknown flag decoded")
	}
}

func FuzzRecordDecode(f *testing.F) {
	f.Add((&Record{Seq: 1, Gen: 2, Error: "x"}).encode())
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if r.decode(b) != nil {
			return
		}
		var again Record
		if err := again.decode(r.encode()); err != nil || again.Seq != r.Seq || again.Error != r.Error ||
			again.Tree != r.Tree || again.Fresh != r.Fresh || again.From != r.From {
			t.Fatalf("re-encoding %+v: %v", r, err)
		}
	})
}
