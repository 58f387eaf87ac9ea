// Package control is the local socket through which `sersyncd status` and
// `sersyncd retry` talk to a running daemon, so the queue file's
// single-writer lock is never fought over.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/status"
)

// SocketPath is where the daemon using the queue file db listens.
func SocketPath(db string) string { return db + ".sock" }

// Request is one command.
type Request struct {
	Cmd    string `json:"cmd"` // "status", "retry" or "enqueue"
	Target string `json:"target,omitempty"`
	// Paths, for "enqueue": relative to the root, queued as changes of
	// Target (`sersyncd verify --repair`). Bytes (base64 in JSON), since
	// JSON strings would turn a name's invalid UTF-8 into U+FFFD.
	Paths [][]byte `json:"paths,omitempty"`
}

// EnqueueRequest asks to queue paths as changes of target.
func EnqueueRequest(target string, paths []string) Request {
	req := Request{Cmd: "enqueue", Target: target, Paths: make([][]byte, len(paths))}
	for i, p := range paths {
		req.Paths[i] = []byte(p)
	}
	return req
}

// Response answers a Request.
type Response struct {
	Error  string         `json:"error,omitempty"`
	Status *Status        `json:"status,omitempty"`
	Replay []retry.Result `json:"replay,omitempty"`
	Queued int            `json:"queued,omitempty"` // "enqueue": paths queued
}

// Status is what `sersyncd status` shows.
type Status struct {
	Running     bool   `json:"running"`
	PID         int    `json:"pid,omitempty"`
	Queue       string `json:"queue"`
	WatchedDirs int    `json:"watched_dirs,omitempty"`
	Overflows   int    `json:"overflows,omitempty"`
	Degraded    string `json:"degraded,omitempty"` // why some directories have no watch
	// Missed is why changes may have been missed, while a full push of
	// every target is owed for it.
	Missed string `json:"missed,omitempty"`
	// Sources are the watched trees (<localpath>), in config order.
	Sources []SourceStatus  `json:"sources"`
	Targets []status.Target `json:"targets"`
}

// SourceStatus is one watched tree and the names of its targets.
type SourceStatus struct {
	Path        string   `json:"path"`
	Targets     []string `json:"targets"`
	WatchedDirs int      `json:"watched_dirs,omitempty"`
	Degraded    string   `json:"degraded,omitempty"`
}

// Handler serves the commands.
type Handler interface {
	Status() (*Status, error)
	Replay(ctx context.Context, target string) ([]retry.Result, error)
	// Enqueue queues paths as changes of one target.
	Enqueue(target string, paths []string) (int, error)
}

// Server listens on the socket.
type Server struct {
	ln      net.Listener
	path    string
	handler Handler
	log     logrus.FieldLogger
	wg      sync.WaitGroup
}

// Listen creates the socket, mode 0600, replacing a stale one left by a
// crash (the queue file's lock, already held, proves no daemon uses it).
func Listen(path string, h Handler, log logrus.FieldLogger) (*Server, error) {
	if len(path) > 104 {
		return nil, fmt.Errorf("listen on control socket %s: path longer than a unix socket allows (104 bytes); use a shorter --db path", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict control socket: %w", err)
	}
	s := &Server{ln: ln, path: path, handler: h, log: log}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops listening and waits for requests being served.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	_ = os.Remove(s.path)
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.handle(conn.(*net.UnixConn))
		}()
	}
}

func (s *Server) handle(conn *net.UnixConn) {
	var resp Response
	defer func() { _ = json.NewEncoder(conn).Encode(&resp) }()
	if err := checkPeer(conn); err != nil {
		s.log.WithError(err).Warn("control socket: refused a client")
		resp.Error = err.Error()
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req Request
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("read request: %v", err)
		return
	}
	switch req.Cmd {
	case "status":
		st, err := s.handler.Status()
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Status = st
	case "retry":
		res, err := s.handler.Replay(context.Background(), req.Target)
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Replay = res
	case "enqueue":
		paths := make([]string, len(req.Paths))
		for i, p := range req.Paths {
			paths[i] = string(p)
		}
		n, err := s.handler.Enqueue(req.Target, paths)
		if err != nil {
			resp.Error = err.Error()
		}
		resp.Queued = n
	default:
		resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
	}
}

// checkPeer admits only the daemon's own user and root: the socket's mode
// already says so, but a socket inherited or re-permissioned must not widen it.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("read peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("read peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("read peer credentials: %w", credErr)
	}
	if me := uint32(os.Geteuid()); cred.Uid != me && cred.Uid != 0 {
		return fmt.Errorf("uid %d may not use the control socket of uid %d", cred.Uid, me)
	}
	return nil
}

// CheckPaths refuses a path that is not a clean path below the root: an
// absolute one, one with "..", ".", an empty element or a NUL. "." itself
// would be the queue's full-push record.
func CheckPaths(paths []string) error {
	for _, p := range paths {
		bad := p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.IndexByte(p, 0) >= 0
		for _, el := range strings.Split(p, "/") {
			bad = bad || el == "" || el == "." || el == ".."
		}
		if bad {
			return fmt.Errorf("enqueue: %q is not a path below the root", p)
		}
	}
	return nil
}

// ErrNoDaemon means nothing listens on the socket.
var ErrNoDaemon = errors.New("no daemon answers on the control socket")

// Call sends one request and waits for the answer, at most timeout.
func Call(path string, req Request, timeout time.Duration) (*Response, error) {
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (%s)", ErrNoDaemon, path)
		}
		return nil, fmt.Errorf("connect to control socket %s: %w", path, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	sendErr := json.NewEncoder(conn).Encode(&req)
	// A refused client is answered, with the reason, before the server
	// reads anything, and then the server hangs up: the send can fail
	// while the answer is there to read.
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if sendErr != nil {
			return nil, fmt.Errorf("send request to %s: %w", path, sendErr)
		}
		return nil, fmt.Errorf("read answer from %s: %w", path, err)
	}
	return &resp, nil
}
