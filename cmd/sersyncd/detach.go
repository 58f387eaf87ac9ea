package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sersyncd/sersyncd/internal/safefile"
)

// detachedEnv marks the re-executed child of -d: Go cannot fork, so -d
// starts the same binary again in a new session with its output in the log.
const detachedEnv = "SERSYNCD_DETACHED"

// detach starts the daemon in the background. Its stdout and stderr go to
// --log-file whatever --log-target says: that is where the Go runtime
// writes a crash.
func detach(f daemonFlags, stderr io.Writer) int {
	logf, err := safefile.OpenAppend(f.logFile, 0o640)
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: open log file: %v\n", err)
		return exitRuntime
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "sersyncd: find own executable: %v\n", err)
		return exitRuntime
	}
	os.Remove(f.pidFile)
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), detachedEnv+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "sersyncd: start background process: %v\n", err)
		return exitRuntime
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Report a start-up failure here, where the operator is looking, rather
	// than only in the log: the child writes its pid file once it runs.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(stderr, "sersyncd: background process exited at start (%v); see %s\n", err, logWhere(f))
			return exitRuntime
		case <-deadline:
			fmt.Fprintf(stderr, "sersyncd: running in the background as pid %d (still starting); log: %s\n", cmd.Process.Pid, logWhere(f))
			return exitOK
		case <-tick.C:
			if b, err := os.ReadFile(f.pidFile); err == nil && len(b) > 0 {
				fmt.Fprintf(stderr, "sersyncd: running in the background as pid %d; log: %s\n", cmd.Process.Pid, logWhere(f))
				return exitOK
			}
		}
	}
}

func writePidFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create pid directory: %w", err)
	}
	// Checked at start; a link planted since is refused here. The rename
	// replaces whatever is at path, a link too, never what it points to.
	if err := safefile.Check(path); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // left by a crash, or planted: a link is removed, not followed
	f, err := safefile.Create(tmp, 0o644)
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(fmt.Errorf("write pid file: %w", err), os.Remove(tmp))
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("write pid file: %w", err), os.Remove(tmp))
	}
	return nil
}
