package rsync

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

func (t *Target) run(ctx context.Context, args []string, stdin *bytes.Buffer) error {
	p, err := t.start(args)
	if err != nil {
		return err
	}
	return p.finish(ctx, stdin.Bytes())
}

// rsyncProc is a started rsync that reads its list (of files, or of
// excludes) from a pipe.
type rsyncProc struct {
	t              *Target
	cmd            *exec.Cmd
	list           *os.File // the write end of rsync's stdin
	stdout, stderr bytes.Buffer
	done           chan struct{} // closed once rsync has exited
	waitErr        error         // cmd.Wait's, once done is closed
	idle           *time.Timer   // a standby's: ends it when unused
}

// start runs rsync with args; it waits for its list on stdin, which an
// rsync of a daemon or ssh target reads only once connected (see Standby).
func (t *Target) start(args []string) (*rsyncProc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start rsync: %w", err)
	}
	p := &rsyncProc{t: t, list: w, done: make(chan struct{})}
	p.cmd = exec.Command(t.binary(), args...)
	p.cmd.Stdin = r
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if t.opt.OnProgress != nil && slices.Contains(args, "--info=progress2") {
		p.cmd.Stdout = &progressWriter{target: t.Name(), fn: t.opt.OnProgress, rest: &p.stdout}
	}
	// Its own process group, so a cancelled push kills ssh too; and killed
	// with sersyncd, so no orphan races the next instance's pushes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.WaitDelay = 5 * time.Second
	err = p.cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start rsync: %w", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether rsync has ended already.
func (p *rsyncProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends rsync's whole process group (ssh included).
func (p *rsyncProc) kill() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// finish hands rsync its list and waits for it to end; ctx ending kills it.
func (p *rsyncProc) finish(ctx context.Context, list []byte) error {
	stop := context.AfterFunc(ctx, p.kill)
	defer stop()
	// A large list fills the pipe: this write returns once rsync has read
	// it all, or fails when rsync has died, which its exit status explains.
	_, writeErr := p.list.Write(list)
	p.list.Close()
	<-p.done
	t, err := p.t, p.waitErr
	if t.opt.OnBytesSent != nil {
		if n, ok := bytesSent(p.stdout.Bytes()); ok {
			t.opt.OnBytesSent(t.Name(), n)
		}
	}
	if err == nil {
		if writeErr != nil {
			// Never reached in practice; but a push is only done if rsync
			// had its whole list.
			return fmt.Errorf("write file list to rsync: %w", writeErr)
		}
		return nil
	}
	tail := t.opt.StderrTail
	if tail <= 0 {
		tail = 2048
	}
	if err, ok := exitError(err, p.stderr.Bytes(), tail); ok {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run rsync: %w", ctx.Err())
	}
	return fmt.Errorf("run rsync: %w", err)
}
