package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/confxml"
)

// env is one benchmark cell's set-up: a source tree and K rsync daemons on
// 127.0.0.1..K sharing one port.
type env struct {
	dir, src string
	port     int
	ds       []*rsyncd
	// ssh, when set, is how the contenders reach the targets instead: each
	// daemon's directory over ssh (sshd.go), the daemons idle.
	ssh *benchSSH
}

// daemonsCPU is the CPU seconds used so far by the receiving rsync daemons
// and the session processes they forked.
func (e *env) daemonsCPU() float64 {
	var sum float64
	for _, d := range e.ds {
		sum += treeCPU(d.p.pid())
	}
	return sum
}

func (e *env) targets() []string {
	var t []string
	for _, d := range e.ds {
		t = append(t, d.dir)
	}
	return t
}

// contender replicates e.src to every daemon of e.
type contender interface {
	// start returns once the contender watches (and its initial sync, if
	// it always does one, is over).
	start(e *env, readyTimeout time.Duration) error
	// after is called when a workload (or one latency change) has ended,
	// with the paths it changed; daemons return at once.
	after(e *env, changed []string) error
	// cpu is the CPU seconds used so far by the contender and every rsync
	// it started.
	cpu() float64
	// rssKiB is the daemon's peak RSS (VmHWM) so far; 0 when not applicable.
	rssKiB() int64
	stop()
	isDaemon() bool
}

// rsyncFlags are given to every contender's rsync client: archive mode
// without compression (localhost), and TCP_NODELAY, which the daemons set
// too and without which every call pays Nagle/delayed-ACK waits.
var rsyncFlags = []string{"-a", "--sockopts=TCP_NODELAY"}

func newContender(name, bin string) (contender, error) {
	switch name {
	case "sersyncd":
		return &sersyncdC{bin: bin}, nil
	case "lsyncd":
		return &lsyncdC{}, nil
	case "script":
		return &scriptC{}, nil
	case "limit":
		return &limitC{}, nil
	}
	return nil, fmt.Errorf("unknown contender %q (sersyncd, lsyncd, script, limit)", name)
}

// ---- sersyncd ----

type sersyncdC struct {
	bin     string
	p       *proc
	started time.Duration // time from exec until "sersyncd started"
}

func writeSersyncdConf(e *env, path string, remotes []*rsyncd, port int) error {
	var rs []confxml.Remote
	for _, d := range remotes {
		rs = append(rs, confxml.Remote{IP: d.ip, Module: d.module})
	}
	authUser, sshCommand := "root", ""
	if e.ssh != nil {
		// Each daemon's directory, as host:dir, through its own proxy.
		rs, authUser, sshCommand, port = nil, "", e.ssh.command(), e.ssh.port
		for _, d := range remotes {
			rs = append(rs, confxml.Remote{IP: d.ip, Module: d.dir})
		}
	}
	// sersyncd's defaults (no <sersyncd> element), -a, a 100 s timeout.
	return confxml.Write(path, confxml.Conf{
		Debug: os.Getenv("BENCH_KEEP_OUTPUT") != "", Src: e.src, Dir: e.dir, Port: port, Targets: rs,
		Attrib: true, Params: "-a", AuthUser: authUser, Timeout: 100, SSH: sshCommand,
	})
}

func (c *sersyncdC) start(e *env, readyTimeout time.Duration) error {
	conf := filepath.Join(e.dir, "confxml.xml")
	if err := writeSersyncdConf(e, conf, e.ds, e.port); err != nil {
		return err
	}
	t0 := time.Now()
	args := []string{"-o", conf, "--db", filepath.Join(e.dir, "queue.db")}
	// For profiling one cell, e.g. BENCH_SERSYNCD_ARGS="--metrics 127.0.0.1:9099".
	args = append(args, strings.Fields(os.Getenv("BENCH_SERSYNCD_ARGS"))...)
	p, err := startProc(c.bin, args, nil)
	if err != nil {
		return err
	}
	c.p = p
	if !p.waitOutput("sersyncd started", 1, readyTimeout) {
		return fmt.Errorf("sersyncd did not start within %v: %s", readyTimeout, tail(p.out.String(), 2000))
	}
	c.started = time.Since(t0)
	return nil
}

func (c *sersyncdC) after(*env, []string) error { return nil }
func (c *sersyncdC) cpu() float64               { return treeCPU(c.p.pid()) }
func (c *sersyncdC) rssKiB() int64              { return statusKiB(c.p.pid(), "VmHWM") }
func (c *sersyncdC) isDaemon() bool             { return true }
func (c *sersyncdC) stop() {
	if c.p != nil {
		c.p.stop(5 * time.Second)
	}
}

// ---- lsyncd ----

type lsyncdC struct{ p *proc }

func (c *lsyncdC) start(e *env, readyTimeout time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "settings {\n  logfile = %q,\n  statusFile = %q,\n  nodaemon = true,\n  insist = true,\n}\n",
		filepath.Join(e.dir, "lsyncd.log"), filepath.Join(e.dir, "lsyncd.status"))
	for _, d := range e.ds {
		if e.ssh != nil {
			// default.rsyncssh: moves and deletes by ssh on the target.
			var opts []string
			for _, o := range sshOptions {
				k, v, _ := strings.Cut(o, "=")
				opts = append(opts, fmt.Sprintf("%s = %q", k, v))
			}
			fmt.Fprintf(&b, "sync {\n  default.rsyncssh,\n  source = %q,\n  host = %q,\n  targetdir = %q,\n  delay = 0,\n"+
				"  rsync = { archive = true },\n  ssh = { port = %d, identityFile = %q, options = { %s } },\n}\n",
				e.src, d.ip, d.dir, e.ssh.port, e.ssh.keyFile, strings.Join(opts, ", "))
			continue
		}
		fmt.Fprintf(&b, "sync {\n  default.rsync,\n  source = %q,\n  target = %q,\n  delay = 0,\n"+
			"  rsync = { archive = true, _extra = { \"--port=%d\", \"--sockopts=TCP_NODELAY\" } },\n}\n",
			e.src, d.ip+"::"+d.module, d.port)
	}
	conf := filepath.Join(e.dir, "lsyncd.conf.lua")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return err
	}
	p, err := startProc("lsyncd", []string{"-nodaemon", conf}, nil)
	if err != nil {
		return err
	}
	c.p = p
	// lsyncd always starts with a full rsync per sync block.
	if !p.waitOutput("finished", len(e.ds), readyTimeout) {
		return fmt.Errorf("lsyncd did not finish its start-up sync within %v: %s", readyTimeout, tail(p.out.String(), 2000))
	}
	return nil
}

func (c *lsyncdC) after(*env, []string) error { return nil }
func (c *lsyncdC) cpu() float64               { return treeCPU(c.p.pid()) }
func (c *lsyncdC) rssKiB() int64              { return statusKiB(c.p.pid(), "VmHWM") }
func (c *lsyncdC) isDaemon() bool             { return true }
func (c *lsyncdC) stop() {
	if c.p != nil {
		c.p.stop(5 * time.Second)
	}
}

// ---- the classic inotifywait | rsync script ----

type scriptC struct{ p *proc }

const classicScript = `
src=$1; port=$2; shift 2
for target in "$@"; do
  inotifywait -mr -e modify,create,delete,move,close_write "$src" | while read -r line; do
    rsync -a --delete --sockopts=TCP_NODELAY --port="$port" "$src"/ "$target"
  done &
done
wait
`

func (c *scriptC) start(e *env, readyTimeout time.Duration) error {
	args := []string{"-c", classicScript, "bash", e.src, fmt.Sprint(e.port)}
	for _, d := range e.ds {
		args = append(args, d.ip+"::"+d.module+"/")
	}
	p, err := startProc("bash", args, nil)
	if err != nil {
		return err
	}
	c.p = p
	if !p.waitOutput("Watches established", len(e.ds), readyTimeout) {
		return fmt.Errorf("inotifywait did not start within %v: %s", readyTimeout, tail(p.out.String(), 2000))
	}
	return nil
}

func (c *scriptC) after(*env, []string) error { return nil }
func (c *scriptC) cpu() float64               { return treeCPU(c.p.pid()) }
func (c *scriptC) rssKiB() int64              { return hwmByComm(c.p.pid(), "inotifywait") }
func (c *scriptC) isDaemon() bool             { return true }
func (c *scriptC) stop() {
	if c.p != nil {
		c.p.stop(2 * time.Second)
	}
}

// ---- the limit: one rsync of exactly the changed set per target ----

type limitC struct {
	mu   sync.Mutex
	used float64
}

func (c *limitC) start(*env, time.Duration) error { return nil }

func (c *limitC) after(e *env, changed []string) error {
	var list bytes.Buffer
	for _, p := range changed {
		list.WriteString(p)
		list.WriteByte(0)
	}
	errs := make(chan error, len(e.ds))
	for _, d := range e.ds {
		go func(d *rsyncd) {
			args := append(append([]string{}, rsyncFlags...), "--from0", "--files-from=-",
				"--delete-missing-args", "--force", "--", e.src+"/", d.url())
			cmd := exec.Command("rsync", args...)
			cmd.Stdin = bytes.NewReader(list.Bytes())
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState != nil {
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					c.mu.Lock()
					c.used += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
					c.mu.Unlock()
				}
			}
			if err != nil {
				err = fmt.Errorf("rsync to %s: %v: %s", d.url(), err, tail(string(out), 500))
			}
			errs <- err
		}(d)
	}
	var first error
	for range e.ds {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (c *limitC) cpu() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
func (c *limitC) rssKiB() int64  { return 0 }
func (c *limitC) isDaemon() bool { return false }
func (c *limitC) stop()          {}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
