package testutil

// A queue file per test, closed when the test ends. testutil does not
// import internal/queue: the queue's own tests use this too, and a
// package's tests cannot import what imports it; the caller passes
// queue.Open (or OpenTool, or the queue package's Open).

import (
	"io"
	"path/filepath"
	"testing"
)

// OpenQueue opens the queue file at path for targets with open, and closes
// it (cleanly) when the test ends. An empty path is a fresh file in a
// directory that open must create. It returns the queue and its path.
func OpenQueue[Q io.Closer](t testing.TB, open func(path string, targets []string) (Q, error), path string, targets ...string) (Q, string) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sub", "queue.db")
	}
	q, err := open(path, targets)
	if err != nil {
		t.Fatalf("open queue %s: %v", path, err)
	}
	t.Cleanup(func() { q.Close() })
	return q, path
}
