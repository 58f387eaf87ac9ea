package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/plain"
)

// benchSSH is a real sshd on 127.0.0.1 for the ssh workloads, reached
// through one counting TCP proxy per target (on 127.0.0.1..K, one port),
// so that the bytes each target received are known whoever sent them (an
// ssh target has no daemon log): what crossed the proxy towards sshd,
// encrypted, file lists and all.
type benchSSH struct {
	port    int    // the proxies' port: the contenders' ssh port
	keyFile string // the client key
	sshd    *proc
	proxies []*countingProxy
}

// sshOptions are the ssh options every contender uses (a throwaway host key).
var sshOptions = []string{"StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "LogLevel=ERROR"}

// command is the ssh command line for sersyncd (which adds -p port).
func (s *benchSSH) command() string {
	c := "ssh -i " + s.keyFile
	for _, o := range sshOptions {
		c += " -o " + o
	}
	return c
}

// received is what the proxies passed on towards sshd so far, per target.
func (s *benchSSH) received() []int64 {
	n := make([]int64, len(s.proxies))
	for i, p := range s.proxies {
		n[i] = p.up.Load()
	}
	return n
}

// sessions is the connections the proxies took so far, all targets.
func (s *benchSSH) sessions() int {
	n := 0
	for _, p := range s.proxies {
		n += int(p.conns.Load())
	}
	return n
}

func (s *benchSSH) stop() {
	for _, p := range s.proxies {
		p.close()
	}
	if s.sshd != nil {
		s.sshd.stop(time.Second)
	}
}

func startSSH(dir string, k int) (*benchSSH, error) {
	sshdPath := "/usr/sbin/sshd"
	if _, err := os.Stat(sshdPath); err != nil {
		if sshdPath, err = exec.LookPath("sshd"); err != nil {
			return nil, fmt.Errorf("sshd not found (install openssh-server): %w", err)
		}
	}
	hostKey, userKey := filepath.Join(dir, "ssh_host_ed25519_key"), filepath.Join(dir, "id_ed25519")
	for _, key := range []string{hostKey, userKey} {
		if out, err := run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return nil, err
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, pub, 0o600); err != nil {
		return nil, err
	}
	_ = os.MkdirAll("/run/sshd", 0o755)
	sshdPort, err := plain.FreePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sshd_config")
	lines := []string{
		"ListenAddress 127.0.0.1", fmt.Sprintf("Port %d", sshdPort), "HostKey " + hostKey,
		"AuthorizedKeysFile " + authKeys, "PasswordAuthentication no", "PubkeyAuthentication yes",
		"StrictModes no", "UsePAM no", "PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin prohibit-password", "UseDNS no", "MaxStartups 200", "MaxSessions 100",
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	s := &benchSSH{keyFile: userKey}
	if s.sshd, err = startProc(sshdPath, []string{"-D", "-e", "-f", conf}, nil); err != nil {
		return nil, err
	}
	if s.port, err = plain.FreePort(); err != nil {
		s.stop()
		return nil, err
	}
	for i := 0; i < k; i++ {
		p, err := newCountingProxy(fmt.Sprintf("127.0.0.%d:%d", i+1, s.port), fmt.Sprintf("127.0.0.1:%d", sshdPort))
		if err != nil {
			s.stop()
			return nil, err
		}
		s.proxies = append(s.proxies, p)
	}
	// A real login through the first proxy: sshd listens before it can
	// authenticate.
	args := []string{"-i", userKey, "-p", fmt.Sprint(s.port)}
	for _, o := range append(sshOptions, "ConnectTimeout=2") {
		args = append(args, "-o", o)
	}
	args = append(args, "127.0.0.1", "true")
	var out string
	for i := 0; i < 50; i++ {
		if out, err = run("ssh", args...); err == nil {
			for _, p := range s.proxies {
				p.up.Store(0)
				p.conns.Store(0)
			}
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("sshd did not accept a login: %v: %s %s", err, out, s.sshd.out.String())
}

// countingProxy forwards TCP connections from listen to to, counting the
// bytes sent towards to.
type countingProxy struct {
	l     net.Listener
	to    string
	up    atomic.Int64
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newCountingProxy(listen, to string) (*countingProxy, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &countingProxy{l: l, to: to}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *countingProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		go p.forward(c)
	}
}

func (p *countingProxy) forward(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.to)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, s)
		c.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(counter{w: s, n: &p.up}, c)
	s.(*net.TCPConn).CloseWrite()
	<-done
}

func (p *countingProxy) close() {
	p.l.Close()
	p.wg.Wait()
}

type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
