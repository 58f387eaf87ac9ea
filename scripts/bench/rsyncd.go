package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rsyncd is a real `rsync --daemon` on one loopback address serving one
// writable module, configured as a production backup server would be.
type rsyncd struct {
	ip, module, dir, conf, log string
	port                       int
	p                          *proc
}

func startRsyncd(base, ip, module string, port int) (*rsyncd, error) {
	d := &rsyncd{ip: ip, module: module, port: port,
		dir:  filepath.Join(base, module),
		conf: filepath.Join(base, module+".conf"),
		log:  filepath.Join(base, module+".log")}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, err
	}
	root := os.Geteuid() == 0
	var b strings.Builder
	fmt.Fprintf(&b, "pid file = %s\n", filepath.Join(base, module+".pid"))
	fmt.Fprintf(&b, "lock file = %s\n", filepath.Join(base, module+".lock"))
	fmt.Fprintf(&b, "log file = %s\nport = %d\naddress = %s\n", d.log, port, ip)
	fmt.Fprintf(&b, "use chroot = %t\nsocket options = TCP_NODELAY\nmax connections = 0\n", root)
	if root {
		b.WriteString("uid = root\ngid = root\n")
	}
	fmt.Fprintf(&b, "\n[%s]\npath = %s\nread only = false\nmunge symlinks = no\nlist = yes\n", module, d.dir)
	if err := os.WriteFile(d.conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("rsync", []string{"--daemon", "--no-detach", "--config=" + d.conf}, nil)
	if err != nil {
		return nil, err
	}
	d.p = p
	// For analysis only, e.g. BENCH_DAEMON_NICE=19: the receiving daemons
	// (and the sessions they fork) yield the CPU to everything else, as if
	// they ran on the backup servers; what the writer still loses is the
	// contender's own doing. Not used by make bench.
	if n, err := strconv.Atoi(os.Getenv("BENCH_DAEMON_NICE")); err == nil {
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.pid(), n); err != nil {
			return nil, fmt.Errorf("renice rsync daemon: %w", err)
		}
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	for i := 0; i < 500; i++ {
		if p.exited() {
			break
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return d, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.stop(time.Second)
	return nil, fmt.Errorf("rsync daemon on %s did not start: %s", addr, p.out.String())
}

func (d *rsyncd) url() string { return fmt.Sprintf("rsync://%s:%d/%s/", d.ip, d.port, d.module) }

func (d *rsyncd) logSize() int64 {
	fi, err := os.Stat(d.log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

var statLine = regexp.MustCompile(`sent ([\d,]+) bytes\s+received ([\d,]+) bytes`)

// sessions counts the transfers the daemon logged after offset and the
// bytes it received in them.
func (d *rsyncd) sessions(offset int64) (n int, recv int64) {
	b, err := os.ReadFile(d.log)
	if err != nil || int64(len(b)) < offset {
		return 0, 0
	}
	for _, m := range statLine.FindAllStringSubmatch(string(b[offset:]), -1) {
		n++
		v, _ := strconv.ParseInt(strings.ReplaceAll(m[2], ",", ""), 10, 64)
		recv += v
	}
	return n, recv
}
