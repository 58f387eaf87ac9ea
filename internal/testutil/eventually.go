package testutil

import (
	"testing"
	"time"
)

// Eventually fails t unless cond holds within the given time; it looks
// every millisecond, so a test waits no longer than it must.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(time.Millisecond)
	}
}
