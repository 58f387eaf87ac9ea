package pusher

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/heartbeat"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// hungClaims holds every Claim until gate is closed, as a queue on a hung
// disk would.
type hungClaims struct {
	*queue.Queue
	gate chan struct{}
}

func (q hungClaims) Claim(target string, max int) ([]queue.Item, error) {
	<-q.gate
	return q.Queue.Claim(target, max)
}

// TestHeartbeatSeesAStuckTargetLoop: a push that hangs is not the loop
// being stuck (rsync's --timeout ends it, and the loop goes on), a loop
// whose claim from the queue hangs is.
func TestHeartbeatSeesAStuckTargetLoop(t *testing.T) {
	const bound = 100 * time.Millisecond
	hung := make(chan struct{})
	defer close(hung)
	slow := &fakeTarget{name: "slow", push: func(ctx context.Context, _ []string) error { return wait(ctx, hung) }}
	real := queueFor(t, slow)
	gate := make(chan struct{})
	q := hungClaims{real, gate}
	reg := heartbeat.New()
	log := testutil.QuietLog()
	p := New(q, []Target{slow}, Options{Workers: 2, Heartbeat: reg, Log: log})
	start(t, p)
	if err := real.Add([]string{"a"}); err != nil {
		t.Fatal(err)
	}

	// The claim hangs: the loop is stuck.
	var got []string
	testutil.Eventually(t, 5*time.Second, "the hung claim to be reported", func() bool {
		got = reg.Stuck(time.Now(), bound)
		return len(got) > 0
	})
	if len(got) != 1 || !strings.HasPrefix(got[0], "push: slow") {
		t.Fatalf("stuck = %q", got)
	}
	// The claim returns, the push hangs: the loop waits, alive.
	close(gate)
	testutil.Eventually(t, 5*time.Second, "the push to start", func() bool { c, _, _, _ := slow.snapshot(); return c == 1 })
	testutil.Eventually(t, 5*time.Second, "the loop to be alive during the hung push", func() bool {
		return len(reg.Stuck(time.Now(), bound)) == 0
	})
	time.Sleep(3 * bound)
	if got := reg.Stuck(time.Now(), bound); len(got) > 0 {
		t.Fatalf("a hung push made the loop stuck: %q", got)
	}
}
