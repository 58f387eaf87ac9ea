package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a running command whose stdout and stderr are captured together.
type Process struct {
	Cmd *exec.Cmd

	out  *Buffer
	done chan struct{} // closed once Cmd.Wait has returned
}

// StartProcess starts name with args in its own process group, so that
// killing it also reaps whatever it spawned. t.Cleanup kills it if it is
// still running.
func StartProcess(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p := &Process{
		Cmd:  exec.Command(name, args...),
		out:  &Buffer{},
		done: make(chan struct{}),
	}
	p.Cmd.Stdout = p.out
	p.Cmd.Stderr = p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("testutil: start %s %q: %v", name, args, err)
	}
	// Wait is called exactly once, here, so that Wait, Kill and the cleanup
	// can all observe the exit concurrently through done.
	go func() {
		_ = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	return p
}

// Output returns everything the process has written so far.
func (p *Process) Output() string { return p.out.String() }

// PID returns the process id (also its process group id).
func (p *Process) PID() int { return p.Cmd.Process.Pid }

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process only (not its group), so that graceful
// shutdown paths are exercised as in production.
func (p *Process) Signal(sig os.Signal) error {
	if p.exited() {
		return os.ErrProcessDone
	}
	return p.Cmd.Process.Signal(sig)
}

// Kill sends SIGKILL to the process group and waits for the process to exit.
func (p *Process) Kill() {
	killAndWait(p.PID(), p.done)
}

// Wait waits up to timeout for the process to exit and returns its exit
// code; -1 means it was killed by a signal. The error is non-nil only on
// timeout, in which case the process is left running.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), nil
	case <-timer.C:
		return 0, fmt.Errorf("testutil: process %d (%s) still running after %v", p.PID(), p.Cmd.Path, timeout)
	}
}

// WaitOutput reports whether substr appears in the output within timeout.
func (p *Process) WaitOutput(substr string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Output(), substr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-p.done:
			// The output is final once the process is gone and Wait has
			// drained the pipes.
			return strings.Contains(p.Output(), substr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
