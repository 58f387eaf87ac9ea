package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// notifySocket is systemd's side of the notify protocol: a unixgram socket
// whose path the daemon finds in NOTIFY_SOCKET.
type notifySocket struct {
	t         *testing.T
	conn      *net.UnixConn
	msgs      chan string  // every datagram but the watchdog pings, in order
	watchdogs atomic.Int64 // WATCHDOG=1 pings
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A socket path has room for 107 bytes; t.TempDir's may be longer.
	dir, err := os.MkdirTemp("", "sd")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify"), Net: "unixgram"})
	must(t, err)
	s := &notifySocket{t: t, conn: conn, msgs: make(chan string, 100)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			if msg == "WATCHDOG=1" {
				s.watchdogs.Add(1)
				continue
			}
			s.msgs <- msg
		}
	}()
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", filepath.Join(dir, "notify"))
	return s
}

// next returns the next message, which must hold the line want.
func (s *notifySocket) next(want string, timeout time.Duration, p *testutil.Process) string {
	s.t.Helper()
	select {
	case msg := <-s.msgs:
		if !slices.Contains(strings.Split(msg, "\n"), want) {
			s.t.Fatalf("systemd was told %q, want %s next", msg, want)
		}
		return msg
	case <-time.After(timeout):
		s.t.Fatalf("systemd was not told %s within %s:\n%s", want, timeout, tail(p.Output(), 4000))
		return ""
	}
}

// TestSystemdNotify runs the daemon as systemd would with Type=notify and
// WatchdogSec: READY=1 once every watch is set (a file made in each of
// 1,500 directories right after it arrives at the target), RELOADING=1 and
// READY=1 around SIGHUP, STOPPING=1 on SIGTERM, WATCHDOG=1 pings meanwhile.
func TestSystemdNotify(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1})
	// Setting 1,500 watches takes a while (about 30 ms here): a READY=1
	// sent before the last is set would let some of the files below go
	// unseen.
	const dirs = 1500
	for i := range dirs {
		must(t, os.Mkdir(e.path(fmt.Sprintf("d%04d", i)), 0o755))
	}
	sock := listenNotify(t)
	const watchdog = time.Second
	t.Setenv("WATCHDOG_USEC", fmt.Sprint(watchdog.Microseconds()))
	p := testutil.StartProcess(t, e.bin, "-o", e.config, "--db", e.db)
	e.proc = p
	ready := sock.next("READY=1", 15*time.Second, p)
	if !strings.Contains(ready, fmt.Sprintf("STATUS=watching %d directories", dirs+1)) {
		t.Errorf("READY=1 without the watch count: %q", ready)
	}
	for i := range dirs {
		e.write(fmt.Sprintf("d%04d/f", i), "made right after READY=1")
	}
	e.converge(20*time.Second, "files made right after READY=1")

	must(t, p.Signal(syscall.SIGHUP))
	reloading := sock.next("RELOADING=1", 5*time.Second, p)
	if !regexp.MustCompile(`(?m)^MONOTONIC_USEC=[0-9]+$`).MatchString(reloading) {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC (systemd 253+ ignores it): %q", reloading)
	}
	sock.next("READY=1", 10*time.Second, p)
	if !p.WaitOutput("config reloaded", 5*time.Second) {
		t.Fatalf("READY=1 after SIGHUP, but no reload:\n%s", p.Output())
	}
	e.write("after-reload", "x")
	e.converge(10*time.Second, "after the reload")

	// Pings every quarter of WatchdogSec while the loops are alive.
	from := sock.watchdogs.Load()
	time.Sleep(watchdog)
	if n := sock.watchdogs.Load() - from; n < 2 {
		t.Errorf("%d WATCHDOG=1 pings in %s with WATCHDOG_USEC=%d", n, watchdog, watchdog.Microseconds())
	}

	must(t, p.Signal(syscall.SIGTERM))
	sock.next("STOPPING=1", 5*time.Second, p)
	if code, err := p.Wait(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v:\n%s", code, err, p.Output())
	}
}

// TestNoNotifySocket: outside systemd the daemon says nothing about it.
func TestNoNotifySocket(t *testing.T) {
	testutil.Integration(t)
	t.Setenv("NOTIFY_SOCKET", "")
	e := newEnv(t, envOptions{targets: 1})
	p := e.start()
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v:\n%s", code, err, p.Output())
	}
	if strings.Contains(p.Output(), "systemd") {
		t.Fatalf("talks about systemd without NOTIFY_SOCKET:\n%s", p.Output())
	}
}
