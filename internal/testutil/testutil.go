// Package testutil holds helpers for the integration tests of sersyncd:
// real rsync daemons and sshd servers on loopback, a tree comparator, a
// process runner with captured output, and a once-per-process build of the
// sersyncd binary.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/plain"
	"github.com/sirupsen/logrus"
)

// FreePort returns a free TCP port on 127.0.0.1.
//
// The port is released before returning, so another process may grab it
// before the caller binds; starters that can detect a failed bind retry.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := plain.FreePort()
	if err != nil {
		t.Fatalf("testutil: FreePort: %v", err)
	}
	return port
}

// RequireRsync skips the test when rsync is not on PATH.
func RequireRsync(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skipf("testutil: rsync not found on PATH (%v); install rsync to run this test", err)
	}
}

var build struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary builds ./cmd/sersyncd once per test process and returns the
// path of the binary.
func BuildBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := findModuleRoot()
		if err != nil {
			build.err = err
			return
		}
		// Not t.TempDir: the binary outlives the first test that asked for it.
		dir, err := os.MkdirTemp("", "sersyncd-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path, build.err = buildPackage(root, "./cmd/sersyncd", filepath.Join(dir, "sersyncd"))
	})
	if build.err != nil {
		t.Fatalf("testutil: BuildBinary: %v", build.err)
	}
	return build.path
}

// buildPackage is separate from BuildBinary so that the self-tests can check
// the build mechanism against a throwaway module, independently of the state
// of cmd/sersyncd.
func buildPackage(moduleRoot, pkg, out string) (string, error) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = moduleRoot
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %v\n%s", pkg, moduleRoot, err, buf.String())
	}
	return out, nil
}

// findModuleRoot walks up from the working directory because `go test` runs
// each package in its own directory, at varying depths.
func findModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return moduleRootFrom(wd)
}

func moduleRootFrom(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && fi.Mode().IsRegular() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found in any parent of the working directory")
		}
		dir = parent
	}
}

// Buffer is a bytes.Buffer that a test may read while something else
// writes it: a child's output, a logger's.
type Buffer = plain.Buffer

// QuietLog is a logger that writes nowhere, for code under test that
// must be given one.
func QuietLog() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return log
}

// killGroup kills the whole process group so that children (rsync daemon
// connection handlers, rsync processes run by sersyncd) do not outlive the
// test; it falls back to the single pid when the group is already gone.
func killGroup(pid int) {
	if pid <= 0 {
		return
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// killAndWait kills pid's group unless done (closed after Wait) says it is
// already reaped, in which case its pid may belong to someone else by now.
func killAndWait(pid int, done <-chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	killGroup(pid)
	<-done
}

// waitTCP reports whether host:port accepts a connection before the
// deadline, giving up early when exited is closed.
func waitTCP(host string, port int, deadline time.Time, exited <-chan struct{}) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	for {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// InotifyWatchesInUse counts the inotify watches every process holds: the
// limit fs.inotify.max_user_watches is per user, and tests that lower it
// must leave room for the watches others already use.
func InotifyWatchesInUse() int {
	n := 0
	fds, _ := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	for _, f := range fds {
		if b, err := os.ReadFile(f); err == nil {
			n += strings.Count(string(b), "inotify wd:")
		}
	}
	return n
}

// Integration skips t under -short: an integration test starts real
// processes (rsync daemons, sshd, sersyncd) and takes seconds.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
}
