package daemon

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// The limit follows the live heap: never under it (the collector would run
// without pause), never under the floor; GOMEMLIMIT overrides it.
func TestLimitMemoryFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	cases := []struct {
		name     string
		live     int // bytes kept reachable while the limit is read
		gomem    string
		wantFrom int64 // the limit is at least this
		wantTo   int64 // and at most this (0: unlimited, as Go's default)
	}{
		{name: "small heap: the floor", live: 0, wantFrom: 1 << 20, wantTo: 16 << 20},
		{name: "64 MiB live: 1.5x it", live: 64 << 20, wantFrom: 96 << 20, wantTo: 128 << 20},
		{name: "GOMEMLIMIT set: left alone", live: 0, gomem: "1GiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.gomem)
			debug.SetMemoryLimit(1 << 62)
			keep := make([]byte, tc.live)
			for i := range keep {
				keep[i] = 1
			}
			runtime.GC()
			ctx, cancel := context.WithCancel(context.Background())
			done := limitMemory(ctx, 1<<20, 10*time.Millisecond)
			time.Sleep(50 * time.Millisecond)
			cancel()
			<-done
			got := debug.SetMemoryLimit(-1)
			runtime.KeepAlive(keep)
			if tc.gomem != "" {
				if got != 1<<62 {
					t.Fatalf("limit %d: changed although GOMEMLIMIT is set", got)
				}
				return
			}
			if got < tc.wantFrom || got > tc.wantTo {
				t.Fatalf("limit %.1f MiB, want %.1f to %.1f MiB", float64(got)/(1<<20), float64(tc.wantFrom)/(1<<20), float64(tc.wantTo)/(1<<20))
			}
		})
	}
}
