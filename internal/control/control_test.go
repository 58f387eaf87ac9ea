package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sersyncd/sersyncd/internal/retry"
	"github.com/sersyncd/sersyncd/internal/status"
)

// fakeHandler answers with what it is given and records its calls; when
// block is set, Replay waits on it.
type fakeHandler struct {
	status    *Status
	statusErr error
	replay    []retry.Result
	replayErr error
	block     chan struct{}
	entered   chan struct{} // receives when Replay starts, if set

	mu    sync.Mutex
	calls []string // "status", or "retry <target>"
}

func (h *fakeHandler) Status() (*Status, error) {
	h.mu.Lock()
	h.calls = append(h.calls, "status")
	h.mu.Unlock()
	return h.status, h.statusErr
}

func (h *fakeHandler) Replay(_ context.Context, target string) ([]retry.Result, error) {
	h.mu.Lock()
	h.calls = append(h.calls, "retry "+target)
	h.mu.Unlock()
	if h.entered != nil {
		h.entered <- struct{}{}
	}
	if h.block != nil {
		<-h.block
	}
	return h.replay, h.replayErr
}

func (h *fakeHandler) Enqueue(target string, paths []string) (int, error) {
	h.mu.Lock()
	h.calls = append(h.calls, fmt.Sprintf("enqueue %s %q", target, paths))
	h.mu.Unlock()
	return len(paths), nil
}

func (h *fakeHandler) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// listen starts a server on a socket in a fresh directory; it is closed
// when the test ends.
func listen(t *testing.T, h Handler) (string, *Server, *logtest.Hook) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db.sock")
	log, hook := logtest.NewNullLogger()
	s, err := Listen(path, h, log)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return path, s, hook
}

func TestSocketPath(t *testing.T) {
	if got := SocketPath("/var/lib/sersyncd/queue.db"); got != "/var/lib/sersyncd/queue.db.sock" {
		t.Errorf("SocketPath = %q", got)
	}
}

func TestRoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 22, 3, 40, 0, 0, time.UTC)
	status := &Status{
		Running: true, PID: 1234, Queue: "/var/lib/q.db", WatchedDirs: 7, Overflows: 2,
		Degraded: "watch limit reached",
		Targets: []status.Target{
			{Name: "a", Pending: 3, Failed: 1, OldestPending: when, LagSeconds: 12.5, LastSuccess: when.Add(-time.Hour),
				LastError: "rsync exit 10", ConsecutiveFailures: 2, RetryAt: when.Add(time.Minute)},
			{Name: "b"},
		},
	}
	results := []retry.Result{{Target: "a", Replayed: 3, StillFailing: 1, Reason: "rsync exit 10"}}
	for _, tc := range []struct {
		name      string
		handler   *fakeHandler
		req       Request
		wantCalls []string
		want      Response
	}{
		{
			name:      "status",
			handler:   &fakeHandler{status: status},
			req:       Request{Cmd: "status"},
			wantCalls: []string{"status"},
			want:      Response{Status: status},
		},
		{
			name:      "status fails",
			handler:   &fakeHandler{statusErr: errors.New("queue unreadable")},
			req:       Request{Cmd: "status"},
			wantCalls: []string{"status"},
			want:      Response{Error: "queue unreadable"},
		},
		{
			name:      "retry one target",
			handler:   &fakeHandler{replay: results},
			req:       Request{Cmd: "retry", Target: "a"},
			wantCalls: []string{"retry a"},
			want:      Response{Replay: results},
		},
		{
			name:      "retry every target",
			handler:   &fakeHandler{replay: results},
			req:       Request{Cmd: "retry"},
			wantCalls: []string{"retry "},
			want:      Response{Replay: results},
		},
		{
			name:      "retry fails with partial results",
			handler:   &fakeHandler{replay: results, replayErr: errors.New(`no target "zz"`)},
			req:       Request{Cmd: "retry", Target: "zz"},
			wantCalls: []string{"retry zz"},
			want:      Response{Error: `no target "zz"`, Replay: results},
		},
		{
			name:      "enqueue",
			handler:   &fakeHandler{},
			req:       EnqueueRequest("a", []string{"x/y", "new\nline", "\xff"}),
			wantCalls: []string{`enqueue a ["x/y" "new\nline" "\xff"]`},
			want:      Response{Queued: 3},
		},
		{
			name:    "unknown command",
			handler: &fakeHandler{status: status},
			req:     Request{Cmd: "shutdown"},
			want:    Response{Error: `unknown command "shutdown"`},
		},
		{
			name:    "empty command",
			handler: &fakeHandler{status: status},
			req:     Request{},
			want:    Response{Error: `unknown command ""`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, _, _ := listen(t, tc.handler)
			resp, err := Call(path, tc.req, 2*time.Second)
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if !reflect.DeepEqual(*resp, tc.want) {
				t.Errorf("response\n got %+v\nwant %+v", *resp, tc.want)
			}
			if calls := tc.handler.Calls(); !reflect.DeepEqual(calls, tc.wantCalls) {
				t.Errorf("handler calls %q, want %q", calls, tc.wantCalls)
			}
		})
	}
}

func TestSocketMode(t *testing.T) {
	// A permissive umask must not widen the socket, and Listen must give
	// the process its umask back.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path, _, _ := listen(t, &fakeHandler{})
	if now := syscall.Umask(0); now != 0 {
		t.Errorf("umask after Listen is %#o, want the caller's 0", now)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Errorf("%s is %v, want a socket", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %#o, want 0600", perm)
	}
}

func TestMalformedRequest(t *testing.T) {
	h := &fakeHandler{status: &Status{}}
	path, _, _ := listen(t, h)
	for _, tc := range []struct {
		name, send string
	}{
		{"not JSON", "status\n"},
		{"wrong type", `{"cmd": 1}` + "\n"},
		{"closed before a request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(conn, tc.send); err != nil {
				t.Fatal(err)
			}
			_ = conn.(*net.UnixConn).CloseWrite()
			var resp Response
			if err := json.NewDecoder(conn).Decode(&resp); err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if !strings.HasPrefix(resp.Error, "read request: ") || resp.Status != nil || resp.Replay != nil {
				t.Errorf("answer %+v, want only a read request error", resp)
			}
		})
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("the handler was called: %q", calls)
	}
}

func TestCallNoDaemon(t *testing.T) {
	dir := t.TempDir()
	// A socket file left by a crash: nothing listens, so connecting to it
	// is refused.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(stale); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	for _, tc := range []struct{ name, path string }{
		{"no socket", filepath.Join(dir, "missing.sock")},
		{"stale socket", stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := Call(tc.path, Request{Cmd: "status"}, time.Second)
			if !errors.Is(err, ErrNoDaemon) {
				t.Fatalf("Call = %+v, %v; want ErrNoDaemon", resp, err)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the socket", err)
			}
		})
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err := Listen(path, &fakeHandler{status: &Status{Queue: "q"}}, logrus.New())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	resp, err := Call(path, Request{Cmd: "status"}, 2*time.Second)
	if err != nil || resp.Status == nil || resp.Status.Queue != "q" {
		t.Errorf("Call = %+v, %v", resp, err)
	}
}

func TestListenPathLength(t *testing.T) {
	dir := t.TempDir()
	name := func(n int) string {
		pad := n - len(dir) - 1
		if pad < 1 {
			t.Skipf("temp dir %s too long", dir)
		}
		return filepath.Join(dir, strings.Repeat("s", pad))
	}
	t.Run("104 bytes", func(t *testing.T) {
		path := name(104)
		s, err := Listen(path, &fakeHandler{status: &Status{}}, logrus.New())
		if err != nil {
			t.Fatalf("Listen(%d bytes): %v", len(path), err)
		}
		defer s.Close()
		if _, err := Call(path, Request{Cmd: "status"}, 2*time.Second); err != nil {
			t.Error(err)
		}
	})
	t.Run("105 bytes", func(t *testing.T) {
		path := name(105)
		s, err := Listen(path, &fakeHandler{}, logrus.New())
		if err == nil {
			s.Close()
			t.Fatalf("Listen(%d bytes) succeeded", len(path))
		}
		if !strings.Contains(err.Error(), "longer than a unix socket allows") {
			t.Errorf("error %q", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("something was created at the path: %v", err)
		}
	})
}

func TestListenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "q.sock")
	if s, err := Listen(path, &fakeHandler{}, logrus.New()); err == nil {
		s.Close()
		t.Fatal("Listen in a missing directory succeeded")
	}
}

func TestCallTimeout(t *testing.T) {
	h := &fakeHandler{block: make(chan struct{})}
	path, _, _ := listen(t, h)
	defer close(h.block) // before the server's Close, which waits for it
	type result struct {
		resp *Response
		err  error
	}
	called := make(chan result, 1)
	go func() {
		resp, err := Call(path, Request{Cmd: "retry"}, 200*time.Millisecond)
		called <- result{resp, err}
	}()
	var r result
	select {
	case r = <-called:
	case <-time.After(1500 * time.Millisecond):
		t.Fatal("Call with a 200ms timeout still waits after 1.5s")
	}
	if r.err == nil {
		t.Fatalf("Call = %+v, want a timeout", r.resp)
	}
	var netErr net.Error
	if errors.Is(r.err, ErrNoDaemon) || !strings.Contains(r.err.Error(), "read answer") || !errors.As(r.err, &netErr) || !netErr.Timeout() {
		t.Errorf("error %q, want a read answer timeout", r.err)
	}
}

func TestCloseWaitsForRequests(t *testing.T) {
	h := &fakeHandler{block: make(chan struct{}), entered: make(chan struct{}, 1), replay: []retry.Result{{Target: "a", Replayed: 1}}}
	path := filepath.Join(t.TempDir(), "q.db.sock")
	s, err := Listen(path, h, logrus.New())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *Response
		err  error
	}
	called := make(chan result, 1)
	go func() {
		resp, err := Call(path, Request{Cmd: "retry", Target: "a"}, 5*time.Second)
		called <- result{resp, err}
	}()
	select {
	case <-h.entered:
	case <-time.After(2 * time.Second):
		close(h.block)
		s.Close()
		t.Fatal("the request did not reach the handler")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
		t.Error("Close returned while a request was being served")
	case <-time.After(100 * time.Millisecond):
	}
	close(h.block)
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return after the request ended")
	}
	r := <-called
	if r.err != nil || len(r.resp.Replay) != 1 || r.resp.Replay[0].Target != "a" {
		t.Errorf("the request in flight got %+v, %v; want its answer", r.resp, r.err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if _, err := Call(path, Request{Cmd: "status"}, time.Second); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Call after Close: %v, want ErrNoDaemon", err)
	}
}

// peerClientEnv makes the test binary, run as another user by
// TestPeerOtherUIDRefused, a client that prints the answer it gets.
const peerClientEnv = "SERSYNCD_CONTROL_TEST_CLIENT"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerClientEnv); path != "" {
		// Not Call: the server answers a refused peer without reading its
		// request, so Call's write may fail (EPIPE) before it reads the
		// answer; this client ignores a failed write and reads.
		conn, err := net.DialTimeout("unix", path, 2*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_ = json.NewEncoder(conn).Encode(Request{Cmd: "status"})
		var resp Response
		if err := json.NewDecoder(conn).Decode(&resp); err != nil {
			fmt.Fprintln(os.Stderr, "read answer:", err)
			os.Exit(2)
		}
		_ = json.NewEncoder(os.Stdout).Encode(&resp)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPeerOtherUIDRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const nobody = 65534
	// A directory nobody may enter, holding a copy of this test binary
	// and a socket whose mode has been widened by hand: only the peer
	// credential check stands between nobody and the daemon.
	dir, err := os.MkdirTemp("", "control-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "q.db.sock")
	h := &fakeHandler{status: &Status{Queue: "secret"}}
	log, hook := logtest.NewNullLogger()
	s, err := Listen(path, h, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin)
	cmd.Env = []string{peerClientEnv + "=" + path}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, NoSetGroups: true}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Skipf("cannot run a process as uid %d here: %v", nobody, err)
		}
		t.Fatalf("client: %v; stderr %q", err, stderr.String())
	}
	var resp Response
	if err := json.Unmarshal([]byte(stdout.String()), &resp); err != nil {
		t.Fatalf("client printed %q: %v", stdout.String(), err)
	}
	want := fmt.Sprintf("uid %d may not use the control socket of uid 0", nobody)
	if !strings.Contains(resp.Error, want) || resp.Status != nil {
		t.Errorf("uid %d got %+v, want refused with %q", nobody, resp, want)
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("the handler served the refused client: %q", calls)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "refused") {
		t.Errorf("refusal not logged as a warning: %v", e)
	}
}

func TestCheckPaths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		paths []string
		ok    bool
	}{
		{"clean", []string{"a", "a/b", "-e x", "new\nline", "..a", "a.."}, true},
		{"root", []string{"."}, false},
		{"empty", []string{""}, false},
		{"absolute", []string{"/etc/passwd"}, false},
		{"up", []string{"a/../../etc"}, false},
		{"dot inside", []string{"a/./b"}, false},
		{"double slash", []string{"a//b"}, false},
		{"trailing slash", []string{"a/"}, false},
		{"nul", []string{"a\x00b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckPaths(tc.paths); (err == nil) != tc.ok {
				t.Fatalf("CheckPaths(%q) = %v, want ok %t", tc.paths, err, tc.ok)
			}
		})
	}
}
