package daemon

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// MemoryFloor is the soft memory limit sersyncd keeps under while its live
// heap is small, and LiveHeadroom the room it leaves above a larger live
// heap, as a fraction of it. By default Go lets the heap grow to twice what
// is live and hands freed memory back to the kernel slowly, so after a burst
// of 100,000 changes a daemon watching 100,000 directories (about 30 MiB
// live) sat at 60 MiB of heap for minutes. A limit that follows the live
// heap, instead of a fixed one, can never be below it: a fixed limit under
// a big tree's live heap would make the collector run without pause.
const (
	MemoryFloor  int64 = 32 << 20
	LiveHeadroom       = 0.5
)

// memoryEvery is how often the limit follows the live heap.
const memoryEvery = time.Second

// LimitMemory sets and keeps adjusting the runtime's soft memory limit
// until ctx ends, unless GOMEMLIMIT says what the operator wants. The
// channel is closed once it no longer adjusts.
func LimitMemory(ctx context.Context) <-chan struct{} {
	return limitMemory(ctx, MemoryFloor, memoryEvery)
}

// limitMemory is LimitMemory with the floor and the period, which a test
// lowers.
func limitMemory(ctx context.Context, floor int64, every time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if os.Getenv("GOMEMLIMIT") != "" {
		close(done)
		return done
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	set := func() {
		metrics.Read(sample)
		var live int64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		debug.SetMemoryLimit(max(floor, live+int64(float64(live)*LiveHeadroom)))
	}
	set()
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				set()
			}
		}
	}()
	return done
}
