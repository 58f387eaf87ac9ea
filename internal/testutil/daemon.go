package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/plain"
)

const daemonStartTimeout = 5 * time.Second

// Daemon is a real `rsync --daemon` on 127.0.0.1 serving one writable module.
//
// As root it chroots into the module, as a production daemon does; without
// chroot (non-root) rsync sanitizes symlink targets that are absolute or
// climb out of the module ("/a/b" arrives as "a/b").
type Daemon struct {
	Module string // module name
	Dir    string // the module's directory (the backup target)
	Port   int

	t         testing.TB
	opts      DaemonOptions
	fixedPort bool
	confDir   string
	confPath  string
	logPath   string
	pidPath   string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stderr  *Buffer
	started bool // a Start has succeeded once; from then on Port is fixed
}

// DaemonOptions configures StartDaemon; zero values select defaults.
type DaemonOptions struct {
	Module   string            // default "backup"
	Dir      string            // default t.TempDir()
	ReadOnly bool              //
	Secrets  map[string]string // user -> password; enables auth users + secrets file
	Port     int               // default: a free port
	Address  string            // default 127.0.0.1; other loopback addresses let daemons share a port
	Timeout  int               // the module's "timeout" in seconds; 0: none
}

// StartDaemon starts an rsync daemon and stops it in t.Cleanup. It skips the
// test when rsync is not installed.
func StartDaemon(t testing.TB, opts DaemonOptions) *Daemon {
	t.Helper()
	RequireRsync(t)
	if opts.Module == "" {
		opts.Module = "backup"
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		t.Fatalf("testutil: StartDaemon: %v", err)
	}
	confDir := t.TempDir()
	d := &Daemon{
		Module:    opts.Module,
		Dir:       dir,
		Port:      opts.Port,
		t:         t,
		opts:      opts,
		fixedPort: opts.Port != 0,
		confDir:   confDir,
		confPath:  filepath.Join(confDir, "rsyncd.conf"),
		logPath:   filepath.Join(confDir, "rsyncd.log"),
		pidPath:   filepath.Join(confDir, "rsyncd.pid"),
	}
	if !d.fixedPort {
		d.Port = FreePort(t)
	}
	if len(opts.Secrets) > 0 {
		var b strings.Builder
		for _, u := range sortedKeys(opts.Secrets) {
			fmt.Fprintf(&b, "%s:%s\n", u, opts.Secrets[u])
		}
		// strict modes rejects a secrets file readable by others.
		if err := os.WriteFile(d.secretsPath(), []byte(b.String()), 0o600); err != nil {
			t.Fatalf("testutil: StartDaemon: %v", err)
		}
	}
	// Registered after the TempDirs so that it runs before they are removed.
	t.Cleanup(d.Stop)
	d.Start()
	return d
}

func (d *Daemon) address() string {
	if d.opts.Address == "" {
		return "127.0.0.1"
	}
	return d.opts.Address
}

func (d *Daemon) secretsPath() string { return filepath.Join(d.confDir, "rsyncd.secrets") }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (d *Daemon) writeConf() error {
	var b strings.Builder
	fmt.Fprintf(&b, "pid file = %s\n", d.pidPath)
	fmt.Fprintf(&b, "lock file = %s\n", filepath.Join(d.confDir, "rsyncd.lock"))
	fmt.Fprintf(&b, "log file = %s\n", d.logPath)
	fmt.Fprintf(&b, "port = %d\n", d.Port)
	fmt.Fprintf(&b, "address = %s\n", d.address())
	fmt.Fprintf(&b, "use chroot = %t\n", os.Geteuid() == 0)
	b.WriteString("socket options = TCP_NODELAY\n")
	if os.Geteuid() == 0 {
		// Without these a root daemon drops to nobody and cannot write the
		// module directory or preserve ownership.
		b.WriteString("uid = root\ngid = root\n")
	}
	fmt.Fprintf(&b, "\n[%s]\n", d.Module)
	fmt.Fprintf(&b, "path = %s\n", d.Dir)
	fmt.Fprintf(&b, "read only = %t\n", d.opts.ReadOnly)
	// Without chroot the daemon would otherwise prefix every symlink target
	// with "/rsyncd-munged/", and trees would never compare equal.
	b.WriteString("munge symlinks = no\n")
	if d.opts.Timeout > 0 {
		fmt.Fprintf(&b, "timeout = %d\n", d.opts.Timeout)
	}
	b.WriteString("list = yes\n")
	b.WriteString("strict modes = yes\n")
	// One "recv NAME" line per file received, for tests that count pushes.
	b.WriteString("transfer logging = yes\n")
	b.WriteString("log format = recv %n\n")
	if len(d.opts.Secrets) > 0 {
		fmt.Fprintf(&b, "auth users = %s\n", strings.Join(sortedKeys(d.opts.Secrets), ", "))
		fmt.Fprintf(&b, "secrets file = %s\n", d.secretsPath())
	}
	return os.WriteFile(d.confPath, []byte(b.String()), 0o644)
}

// Start (re)starts the daemon on the same port, directory and configuration
// and waits until it accepts TCP connections. A running daemon is stopped
// first. Only the very first start may move to another port, and only when
// the caller did not choose one: tests configure sersyncd with d.Port after
// StartDaemon returns.
func (d *Daemon) Start() {
	d.t.Helper()
	d.Stop()
	d.mu.Lock()
	defer d.mu.Unlock()

	deadline := time.Now().Add(daemonStartTimeout)
	var lastErr string
	for attempt := 1; ; attempt++ {
		if err := d.writeConf(); err != nil {
			d.t.Fatalf("testutil: rsync daemon: write config: %v", err)
		}
		// rsync creates the pid file with O_EXCL, and a SIGKILLed daemon
		// leaves it behind.
		_ = os.Remove(d.pidPath)

		stderr := &Buffer{}
		cmd := exec.Command("rsync", "--daemon", "--no-detach", "--config="+d.confPath)
		cmd.Stdout = stderr
		cmd.Stderr = stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			d.t.Fatalf("testutil: start rsync daemon: %v", err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		d.cmd, d.done, d.stderr = cmd, done, stderr

		attemptDeadline := deadline
		if !d.started && !d.fixedPort {
			// Leave time for a few more ports if this one turns out taken.
			attemptDeadline = time.Now().Add(daemonStartTimeout / 2)
		}
		if waitOwnListener(cmd.Process.Pid, d.address(), d.Port, attemptDeadline, done) {
			d.started = true
			return
		}
		killAndWait(cmd.Process.Pid, done)
		d.cmd, d.done = nil, nil
		lastErr = fmt.Sprintf("attempt %d on port %d: %s\nlog:\n%s", attempt, d.Port, stderr.String(), readFile(d.logPath))
		if time.Now().After(deadline) || attempt >= 10 {
			break
		}
		if !d.started && !d.fixedPort {
			if p, err := plain.FreePort(); err == nil {
				d.Port = p
			}
		} else {
			// The old listener may not be fully gone yet; retry the same port.
			time.Sleep(100 * time.Millisecond)
		}
	}
	d.t.Fatalf("testutil: rsync daemon did not accept connections within %v; last %s", daemonStartTimeout, lastErr)
}

// Stop kills the daemon (and its per-connection children) and waits for it.
// It is idempotent.
func (d *Daemon) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	killAndWait(d.cmd.Process.Pid, d.done)
	d.cmd, d.done = nil, nil
}

// Log returns the daemon's log file, followed by anything it wrote to
// stderr (config errors end up there, not in the log).
func (d *Daemon) Log() string {
	log := readFile(d.logPath)
	d.mu.Lock()
	stderr := d.stderr
	d.mu.Unlock()
	if stderr != nil {
		if s := stderr.String(); s != "" {
			log += "--- stderr ---\n" + s
		}
	}
	return log
}

// PID returns the daemon's pid, or 0 when it is stopped.
// Received counts, per path, the files the daemon received (its transfer
// log), across restarts.
func (d *Daemon) Received() map[string]int {
	got := map[string]int{}
	for _, line := range strings.Split(readFile(d.logPath), "\n") {
		if i := strings.Index(line, "] recv "); i >= 0 {
			got[line[i+len("] recv "):]]++
		}
	}
	return got
}

func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// waitOwnListener waits until pid listens on port and a TCP connect
// succeeds. A connect alone is not enough: when two tests were handed the
// same free port, the loser's connect reaches the winner's daemon while the
// loser is still about to fail its bind.
func waitOwnListener(pid int, host string, port int, deadline time.Time, exited <-chan struct{}) bool {
	for {
		if !waitTCP(host, port, deadline, exited) {
			return false
		}
		owned, known := listensOn(pid, port)
		if owned {
			return true
		}
		if !known {
			// No /proc: fall back to giving a failed bind time to show.
			select {
			case <-exited:
				return false
			case <-time.After(300 * time.Millisecond):
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listensOn reports whether pid holds a TCP socket listening on port; known
// is false when /proc cannot tell.
func listensOn(pid, port int) (owned, known bool) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		known = true
		suffix := fmt.Sprintf(":%04X", port)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// sl local_address rem_address st ... inode is field 9.
			if len(fields) > 9 && strings.HasSuffix(fields[1], suffix) && fields[3] == "0A" {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
	}
	if !known {
		return false, false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false, false
	}
	for _, e := range entries {
		if link, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && inodes[link] {
			return true, true
		}
	}
	return false, true
}
