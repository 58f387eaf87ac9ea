package plugin

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
)

// Socket plugin tuning (tuning's socket fields).
const (
	defaultSocketBackoffMin   = 100 * time.Millisecond
	defaultSocketBackoffMax   = 30 * time.Second
	defaultSocketQueueMax     = 100000 // paths waiting per host; beyond, the oldest are dropped
	defaultSocketDialTimeout  = 5 * time.Second
	defaultSocketWriteTimeout = 10 * time.Second
	socketBatchMax            = 1000 // lines per write
)

// newlineEscaper keeps the line protocol: a newline in a name is sent as
// the two characters \n. (A name holding a backslash followed by n is sent
// as is, so a receiver cannot tell the two apart.)
var newlineEscaper = strings.NewReplacer("\n", `\n`)

type socketSender struct {
	hosts []*hostSender
}

// hostSender owns one persistent connection to one <deshost>.
type hostSender struct {
	addr string
	root string
	log  logrus.FieldLogger
	tune tuning

	ctx    context.Context // cancelled when close gives up: dials and writes stop
	cancel context.CancelFunc
	wake   chan struct{}
	quit   chan struct{} // closed by close: stop waiting for backoffs
	done   chan struct{}

	mu      sync.Mutex
	queue   []string // absolute paths, oldest first
	head    uint64   // paths ever removed from the front of queue (sent or dropped)
	dropped int      // dropped in the current burst, 0 when none
	closing bool
	conn    net.Conn
}

func newSocketSender(cfg *config.Config, log logrus.FieldLogger, tune tuning) *socketSender {
	sp := cfg.Socket
	if sp.LocalPath != "" && filepath.Clean(sp.LocalPath) != cfg.LocalPath {
		log.Warnf(`<plugin name="socket"><localpath watch=%q> differs from <sersync><localpath watch=%q>: the paths sent are below the latter`, sp.LocalPath, cfg.LocalPath)
	}
	s := &socketSender{}
	for _, h := range sp.Hosts {
		addr := net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(h.IP, "["), "]"), strconv.Itoa(h.Port))
		hs := &hostSender{addr: addr, root: cfg.LocalPath, log: log.WithField("deshost", addr), tune: tune,
			wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
		hs.ctx, hs.cancel = context.WithCancel(context.Background())
		s.hosts = append(s.hosts, hs)
		go hs.run()
	}
	return s
}

func (s *socketSender) enqueue(rel []string) {
	for _, h := range s.hosts {
		h.enqueue(rel)
	}
}

func (s *socketSender) close(deadline time.Time) {
	var wg sync.WaitGroup
	for _, h := range s.hosts {
		wg.Add(1)
		go func() { defer wg.Done(); h.close(deadline) }()
	}
	wg.Wait()
}

func (h *hostSender) enqueue(rel []string) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	for _, r := range rel {
		h.queue = append(h.queue, absPath(h.root, r))
	}
	if over := len(h.queue) - h.tune.socketQueueMax; over > 0 {
		if h.dropped == 0 {
			h.log.Warnf("%d paths wait for this host, the limit: dropping the oldest until it takes them again", h.tune.socketQueueMax)
		}
		h.dropped += over
		clear(h.queue[:over])
		h.queue = h.queue[over:]
		h.head += uint64(over)
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// peek returns up to socketBatchMax paths from the front, and where they began.
func (h *hostSender) peek() ([]string, uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := min(len(h.queue), socketBatchMax)
	return append([]string(nil), h.queue[:n]...), h.head, h.closing
}

// commit removes the n paths peek returned at head, unless drops removed
// them meanwhile.
func (h *hostSender) commit(head uint64, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if end := head + uint64(n); end > h.head {
		k := min(int(end-h.head), len(h.queue))
		clear(h.queue[:k])
		h.queue = h.queue[k:]
		h.head += uint64(k)
	}
	if len(h.queue) == 0 {
		h.queue = nil // let a large backlog's array go
	}
	if h.dropped > 0 {
		h.log.Warnf("host takes paths again; %d paths were dropped while it did not", h.dropped)
		h.dropped = 0
	}
}

func (h *hostSender) setConn(c net.Conn) {
	h.mu.Lock()
	h.conn = c
	h.mu.Unlock()
}

func (h *hostSender) run() {
	defer close(h.done)
	var conn net.Conn
	var gone chan struct{} // closed when the peer closes conn
	drop := func() {
		if conn != nil {
			conn.Close()
			conn, gone = nil, nil
			h.setConn(nil)
		}
	}
	defer drop()
	backoff := h.tune.socketBackoffMin
	failing := false
	for h.ctx.Err() == nil {
		batch, head, closing := h.peek()
		if len(batch) == 0 {
			if closing {
				return
			}
			select {
			case <-h.ctx.Done():
			case <-h.quit:
			case <-h.wake:
			case <-gone:
				drop() // reconnect when there is something to send
			}
			continue
		}
		select {
		case <-gone:
			drop()
		default:
		}
		if conn == nil {
			d := net.Dialer{Timeout: h.tune.socketDialTimeout}
			c, err := d.DialContext(h.ctx, "tcp", h.addr)
			if err != nil {
				if h.ctx.Err() != nil {
					return
				}
				if !failing {
					h.log.WithError(err).Warnf("cannot connect; %d paths wait, retrying with backoff up to %s", len(batch), h.tune.socketBackoffMax)
				} else {
					h.log.WithError(err).Debugf("cannot connect; retrying in %s", backoff)
				}
				failing = true
				if closing {
					return // no time left for backoffs
				}
				h.sleep(&backoff)
				continue
			}
			conn, gone = c, make(chan struct{})
			h.setConn(c)
			go watchPeer(c, gone)
			if failing {
				h.log.Info("connected again")
			}
			failing = false
		}
		var b strings.Builder
		for _, p := range batch {
			b.WriteString(newlineEscaper.Replace(p))
			b.WriteByte('\n')
		}
		_ = conn.SetWriteDeadline(time.Now().Add(h.tune.socketWriteTimeout))
		if _, err := io.WriteString(conn, b.String()); err != nil {
			// The batch stays queued and is sent again on the next
			// connection; the receiver may see some lines twice.
			if h.ctx.Err() == nil {
				h.log.WithError(err).Warn("send failed; reconnecting")
			}
			drop()
			if closing {
				return
			}
			h.sleep(&backoff) // a peer that accepts and hangs up at once is not hammered
			continue
		}
		backoff = h.tune.socketBackoffMin
		h.commit(head, len(batch))
	}
}

// sleep waits *backoff (or until close gives up) and doubles it, up to
// socketBackoffMax.
func (h *hostSender) sleep(backoff *time.Duration) {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-h.ctx.Done():
	case <-h.quit:
	case <-t.C:
	}
	*backoff = min(*backoff*2, h.tune.socketBackoffMax)
}

// watchPeer reads (and discards) what the peer sends, so that its closing
// the connection is seen before the next write rather than lost in it.
func watchPeer(c net.Conn, gone chan<- struct{}) {
	_, _ = io.Copy(io.Discard, c)
	close(gone)
}

// close sends what waits until deadline, then drops the rest.
func (h *hostSender) close(deadline time.Time) {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	close(h.quit)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-h.done:
	case <-t.C:
		h.cancel()
		h.mu.Lock()
		if h.conn != nil {
			h.conn.Close() // unblocks a write
		}
		h.mu.Unlock()
		<-h.done
	}
	h.cancel()
	h.mu.Lock()
	left := len(h.queue)
	h.queue = nil
	h.mu.Unlock()
	if left > 0 {
		h.log.Warnf("stopping: %d paths not sent", left)
	}
}
