package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sshdStartTimeout = 15 * time.Second

// SSHD is a real sshd on 127.0.0.1 accepting one generated key for the
// current user.
type SSHD struct {
	Port    int
	KeyFile string
	// Command is an ssh command line usable as rsync -e "...".
	Command string
}

// StartSSHD starts sshd and stops it in t.Cleanup. It skips the test when
// sshd, ssh or ssh-keygen are missing.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	sshdPath := findSSHD()
	if sshdPath == "" {
		t.Skip("testutil: sshd not found (/usr/sbin/sshd or PATH); install openssh-server to run this test")
	}
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("testutil: %s not found on PATH (%v); install openssh-client to run this test", tool, err)
		}
	}

	// The key path ends up inside Command, which rsync splits on
	// whitespace, so avoid a TMPDIR with spaces in it.
	base := ""
	if strings.ContainsAny(os.TempDir(), " \t\n'\"\\") {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "testutil-sshd-")
	if err != nil {
		t.Fatalf("testutil: StartSSHD: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	userKey := filepath.Join(dir, "id_ed25519")
	for _, key := range []string{hostKey, userKey} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testutil", "-f", key).CombinedOutput()
		if err != nil {
			t.Fatalf("testutil: ssh-keygen %s: %v\n%s", key, err, out)
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		t.Fatalf("testutil: StartSSHD: %v", err)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, pub, 0o600); err != nil {
		t.Fatalf("testutil: StartSSHD: %v", err)
	}
	// sshd refuses to start without its privilege separation directory;
	// as non-root this may fail, and then sshd reports why.
	_ = os.MkdirAll("/run/sshd", 0o755)

	s := &SSHD{KeyFile: userKey}
	conf := filepath.Join(dir, "sshd_config")
	var lastErr string
	deadline := time.Now().Add(sshdStartTimeout)
	for attempt := 1; attempt <= 5 && time.Now().Before(deadline); attempt++ {
		s.Port = FreePort(t)
		s.Command = fmt.Sprintf("ssh -p %d -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR", s.Port, userKey)
		if err := writeSSHDConfig(sshdPath, conf, dir, s.Port, hostKey, authKeys); err != nil {
			t.Fatalf("testutil: StartSSHD: %v", err)
		}
		out := &Buffer{}
		cmd := exec.Command(sshdPath, "-D", "-e", "-f", conf)
		cmd.Stdout = out
		cmd.Stderr = out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("testutil: start sshd: %v", err)
		}
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		stop := func() { killAndWait(cmd.Process.Pid, done) }
		ok, sshOut := s.waitLogin(deadline, done)
		if ok {
			t.Cleanup(stop)
			return s
		}
		stop()
		lastErr = fmt.Sprintf("attempt %d on port %d:\nsshd: %s\nssh: %s", attempt, s.Port, out.String(), sshOut)
	}
	t.Fatalf("testutil: sshd did not accept a login within %v; last %s", sshdStartTimeout, lastErr)
	return nil
}

func findSSHD() string {
	if fi, err := os.Stat("/usr/sbin/sshd"); err == nil && !fi.IsDir() {
		return "/usr/sbin/sshd"
	}
	p, err := exec.LookPath("sshd")
	if err != nil {
		return ""
	}
	// sshd re-executes itself and insists on an absolute path.
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return ""
}

// writeSSHDConfig writes the config and validates it with `sshd -t`,
// dropping options that this sshd version does not know.
func writeSSHDConfig(sshdPath, conf, dir string, port int, hostKey, authKeys string) error {
	lines := []string{
		"ListenAddress 127.0.0.1",
		fmt.Sprintf("Port %d", port),
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authKeys,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		// The temp dir and its parents are not root-owned for non-root runs.
		"StrictModes no",
		"UsePAM no",
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin prohibit-password",
		"UseDNS no",
		"PrintMotd no",
		// Tests may open many concurrent rsync connections; the default
		// 10:30:100 would randomly refuse some of them.
		"MaxStartups 200",
		"MaxSessions 100",
		"MaxAuthTries 20",
		// Newer sshd penalises sources whose connections are cut, as
		// tests do on purpose when killing rsync.
		"PerSourcePenalties no",
	}
	for range len(lines) {
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		out, err := exec.Command(sshdPath, "-t", "-f", conf).CombinedOutput()
		if err == nil {
			return nil
		}
		bad := -1
		for i, l := range lines {
			opt := strings.Fields(l)[0]
			if bytes.Contains(out, []byte("Bad configuration option: "+opt)) ||
				bytes.Contains(out, []byte("Unsupported option "+opt)) {
				bad = i
				break
			}
		}
		if bad < 0 {
			// Not an unknown option; let the start attempt report it.
			return nil
		}
		lines = append(lines[:bad], lines[bad+1:]...)
	}
	return nil
}

// waitLogin waits for a real login rather than an open port: sshd listens
// before it is able to authenticate (e.g. while /run/sshd is missing).
func (s *SSHD) waitLogin(deadline time.Time, exited <-chan struct{}) (bool, string) {
	args := append(strings.Fields(s.Command)[1:], "-o", "ConnectTimeout=2", "127.0.0.1", "true")
	var last []byte
	for {
		select {
		case <-exited:
			return false, string(last)
		default:
		}
		// ConnectTimeout does not bound a stalled handshake or session.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
		cancel()
		if err == nil {
			return true, ""
		}
		last = out
		if time.Now().After(deadline) {
			return false, string(last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
