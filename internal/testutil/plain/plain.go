// Package plain holds the helpers of testutil that need no *testing.T: a
// locked buffer and a free port. It imports no testing, so the benchmark
// program (scripts/bench) uses them too instead of copies of its own.
package plain

import (
	"bytes"
	"net"
	"sync"
)

// Buffer is a bytes.Buffer that a test may read while something else
// writes it: a child's output, a logger's.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// The port is released before returning, so another process may grab it
// before the caller binds; starters that can detect a failed bind retry.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
