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
		if err := again.decode(r.encode()); err != nil || again.Seq != r.Seq || again.Error != r.Error {
			t.Fatalf("re-encoding %+v: %v", r, err)
		}
	})
}
