package rsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// RunLines runs the target's rsync with args and stdin on its stdin, and
// hands each line of its output to line as it comes: for the dry runs that
// list how the target differs (verify). low runs it at the lowest CPU and
// I/O priority.
func (t *Target) RunLines(ctx context.Context, args []string, stdin []byte, low bool, line func(string)) error {
	argv := append([]string{t.binary()}, args...)
	niced := false
	if low {
		argv, niced = lowPriority(argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("start rsync: %w", err)
	}
	// Its own process group, killed as a whole when ctx ends; and killed
	// with sersyncd, so no orphan keeps reading a tree.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rsync: %w", err)
	}
	if low && !niced {
		// No nice binary: lower rsync itself, before it has done much.
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 19)
	}
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	rd := bufio.NewReaderSize(out, 64<<10)
	for {
		s, err := rd.ReadString('\n')
		if s != "" {
			line(strings.TrimSuffix(s, "\n"))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
			break
		}
	}
	err = cmd.Wait()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run rsync: %w", ctx.Err())
	}
	if err, ok := exitError(err, stderr.Bytes(), 2048); ok {
		return err
	}
	return fmt.Errorf("run rsync: %w", err)
}

// lowPriority prefixes argv with nice and ionice where they are installed,
// so rsync and what it starts (ssh) run at low priority from their start.
func lowPriority(argv []string) (out []string, niced bool) {
	if path, err := exec.LookPath("ionice"); err == nil {
		argv = append([]string{path, "-c3"}, argv...)
	}
	if path, err := exec.LookPath("nice"); err == nil {
		argv = append([]string{path, "-n", "19"}, argv...)
		niced = true
	}
	return argv, niced
}
