package testutil

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Names that break naive shell- or line-based tooling.
const (
	nameNewline = "new\nline.txt"
	nameDash    = "-leading-dash"
	nameInvalid = "invalid-\xff\xfe-utf8"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// makeTree fills dir with every entry kind DiffTrees must handle.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	makeDaemonSafeTree(t, dir)
	symlink(t, "/absolute/target", filepath.Join(dir, "sub", "abs"))
	symlink(t, "../../outside", filepath.Join(dir, "sub", "escape"))
}

// makeDaemonSafeTree is makeTree without the symlinks that a daemon without
// chroot rewrites (see Daemon).
func makeDaemonSafeTree(t *testing.T, dir string) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "a.txt"), "hello\n", 0o644)
	writeFile(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\n", 0o755)
	writeFile(t, filepath.Join(dir, "sub", "b.bin"), strings.Repeat("\x00\x01binary", 10000), 0o600)
	writeFile(t, filepath.Join(dir, "sub", "deep", "c"), "", 0o640)
	writeFile(t, filepath.Join(dir, nameNewline), "newline\n", 0o644)
	writeFile(t, filepath.Join(dir, nameDash), "dash\n", 0o644)
	writeFile(t, filepath.Join(dir, nameInvalid), "invalid\n", 0o644)
	writeFile(t, filepath.Join(dir, nameDash+"-dir", nameInvalid+"-inner"), "inner\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o750); err != nil {
		t.Fatal(err)
	}
	symlink(t, "a.txt", filepath.Join(dir, "link"))
	symlink(t, "does/not/exist", filepath.Join(dir, "dangling"))
	symlink(t, "sub", filepath.Join(dir, "dirlink"))
	symlink(t, "../a.txt", filepath.Join(dir, "sub", "up"))
}

// copyTree is an rsync-free copy so that the DiffTrees tests run anywhere.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case fi.IsDir():
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			return os.Chmod(target, fi.Mode()&fs.ModePerm)
		default:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, 0o600); err != nil {
				return err
			}
			return os.Chmod(target, fi.Mode()&fs.ModePerm)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func rsyncCmd(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "rsync", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRsync(t *testing.T, env []string, args ...string) {
	t.Helper()
	if out, err := rsyncCmd(t, env, args...); err != nil {
		t.Fatalf("rsync %q: %v\n%s", args, err, out)
	}
}

func assertSame(t *testing.T, src, dst string) {
	t.Helper()
	if diffs := DiffTrees(src, dst); len(diffs) != 0 {
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func TestDiffTreesIdentical(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	copyTree(t, src, dst)
	assertSame(t, src, dst)
	assertSame(t, dst, src)
}

func TestDiffTreesReportsDifferences(t *testing.T) {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	cases := []struct {
		name   string
		mutate func(t *testing.T, src, dst string)
		want   []string // substrings of the single expected line
	}{
		{
			name: "one byte changed",
			mutate: func(t *testing.T, src, dst string) {
				p := filepath.Join(dst, "sub", "b.bin")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[54321] ^= 0xff
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{q("sub/b.bin"), "content differs at byte 54321"},
		},
		{
			name:   "size changed",
			mutate: func(t *testing.T, src, dst string) { writeFile(t, filepath.Join(dst, "a.txt"), "hello!\n", 0o644) },
			want:   []string{q("a.txt"), "size differs"},
		},
		{
			name: "mode changed",
			mutate: func(t *testing.T, src, dst string) {
				if err := os.Chmod(filepath.Join(dst, "run.sh"), 0o744); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{q("run.sh"), "mode differs: src 0755, dst 0744"},
		},
		{
			name: "setgid bit on dir",
			mutate: func(t *testing.T, src, dst string) {
				if err := os.Chmod(filepath.Join(dst, "empty"), 0o750|fs.ModeSetgid); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{q("empty"), "mode differs: src 0750, dst 2750"},
		},
		{
			name: "symlink target changed",
			mutate: func(t *testing.T, src, dst string) {
				p := filepath.Join(dst, "link")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				symlink(t, "./a.txt", p)
			},
			want: []string{q("link"), `symlink target differs: src "a.txt", dst "./a.txt"`},
		},
		{
			name: "extra file in dst",
			mutate: func(t *testing.T, src, dst string) {
				writeFile(t, filepath.Join(dst, "sub", "deep", "extra"), "x", 0o644)
			},
			want: []string{q("sub/deep/extra"), "only in dst (file)"},
		},
		{
			name: "missing dir in dst",
			mutate: func(t *testing.T, src, dst string) {
				if err := os.RemoveAll(filepath.Join(dst, "sub")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{q("sub"), "only in src (dir)"},
		},
		{
			name: "file replaced by symlink",
			mutate: func(t *testing.T, src, dst string) {
				p := filepath.Join(dst, "a.txt")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				symlink(t, "run.sh", p)
			},
			want: []string{q("a.txt"), "type differs: src file, dst symlink"},
		},
		{
			name: "newline name content",
			mutate: func(t *testing.T, src, dst string) {
				writeFile(t, filepath.Join(dst, nameNewline), "NEWLINE\n", 0o644)
			},
			want: []string{q(nameNewline), "content differs at byte 0"},
		},
		{
			name: "leading dash name missing",
			mutate: func(t *testing.T, src, dst string) {
				if err := os.Remove(filepath.Join(dst, nameDash)); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{q(nameDash), "only in src (file)"},
		},
		{
			name: "invalid utf8 name mode",
			mutate: func(t *testing.T, src, dst string) {
				if err := os.Chmod(filepath.Join(dst, nameDash+"-dir", nameInvalid+"-inner"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{q(nameDash + "-dir/" + nameInvalid + "-inner"), "mode differs"},
		},
		{
			name: "symlink to dir is not followed",
			mutate: func(t *testing.T, src, dst string) {
				// Changing what the link points at must show up only once,
				// at the link, not as a tree under it.
				p := filepath.Join(dst, "dirlink")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				symlink(t, "empty", p)
			},
			want: []string{q("dirlink"), "symlink target differs"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			makeTree(t, src)
			copyTree(t, src, dst)
			tc.mutate(t, src, dst)
			diffs := DiffTrees(src, dst)
			if len(diffs) != 1 {
				t.Fatalf("want exactly one difference, got %d:\n%s", len(diffs), strings.Join(diffs, "\n"))
			}
			for _, w := range tc.want {
				if !strings.Contains(diffs[0], w) {
					t.Errorf("difference %q does not contain %q", diffs[0], w)
				}
			}
		})
	}
}

func TestDiffTreesSortedAndLimited(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for i := range 30 {
		writeFile(t, filepath.Join(dst, fmt.Sprintf("f%02d", i)), "x", 0o644)
	}
	diffs := DiffTrees(src, dst)
	if len(diffs) != maxDiffs+1 {
		t.Fatalf("got %d lines, want %d:\n%s", len(diffs), maxDiffs+1, strings.Join(diffs, "\n"))
	}
	if got := diffs[maxDiffs]; got != "... and 10 more" {
		t.Errorf("last line = %q", got)
	}
	if !strings.HasPrefix(diffs[0], `"f00"`) || !strings.HasPrefix(diffs[maxDiffs-1], `"f19"`) {
		t.Errorf("not sorted: first %q, last %q", diffs[0], diffs[maxDiffs-1])
	}
}

func TestDiffTreesMissingRoot(t *testing.T) {
	src := t.TempDir()
	if diffs := DiffTrees(src, filepath.Join(src, "nope")); len(diffs) != 1 || !strings.Contains(diffs[0], "dst root") {
		t.Fatalf("got %q", diffs)
	}
}

func TestConverged(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)

	start := time.Now()
	if diffs := Converged(src, dst, 150*time.Millisecond); len(diffs) == 0 {
		t.Fatal("Converged reported equal trees for different trees")
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("Converged took %v for a 150ms timeout", d)
	}

	stage := t.TempDir()
	copyTree(t, src, stage)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(200 * time.Millisecond)
		entries, _ := os.ReadDir(stage)
		for _, e := range entries {
			_ = os.Rename(filepath.Join(stage, e.Name()), filepath.Join(dst, e.Name()))
		}
	}()
	WaitConverged(t, src, dst, 10*time.Second, "copy after %v", "200ms")
	<-done
}

func TestDaemonPushStopStart(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	if d.Module != "backup" || d.Port == 0 || d.Dir == "" || d.PID() == 0 {
		t.Fatalf("unexpected daemon %+v", d)
	}
	src := t.TempDir()
	makeDaemonSafeTree(t, src)
	url := fmt.Sprintf("rsync://127.0.0.1:%d/%s/", d.Port, d.Module)
	mustRsync(t, nil, "-a", src+"/", url)
	assertSame(t, src, d.Dir)

	port, pid := d.Port, d.PID()
	d.Stop()
	d.Stop()
	if d.PID() != 0 {
		t.Errorf("PID after Stop = %d", d.PID())
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("daemon pid %d still alive after Stop", pid)
	}
	if out, err := rsyncCmd(t, nil, "-a", "--contimeout=5", src+"/", url); err == nil {
		t.Fatalf("push to a stopped daemon succeeded:\n%s", out)
	}

	d.Start()
	if d.Port != port {
		t.Fatalf("port changed on restart: %d -> %d", port, d.Port)
	}
	if d.PID() == 0 || d.PID() == pid {
		t.Fatalf("PID after restart = %d (before %d)", d.PID(), pid)
	}
	writeFile(t, filepath.Join(src, "after-restart"), "again\n", 0o644)
	if err := os.Chmod(filepath.Join(src, "a.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if diffs := DiffTrees(src, d.Dir); len(diffs) != 2 {
		t.Fatalf("want 2 differences before the second push, got %q", diffs)
	}
	mustRsync(t, nil, "-a", src+"/", url)
	assertSame(t, src, d.Dir)
	if !strings.Contains(d.Log(), "rsync") {
		t.Errorf("daemon log looks empty:\n%s", d.Log())
	}
}

// As root the daemon chroots, as production daemons do, and then keeps
// absolute and escaping symlink targets exactly.
func TestDaemonKeepsSymlinksExactAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: without chroot rsync sanitizes symlink targets")
	}
	d := StartDaemon(t, DaemonOptions{Address: "127.0.0.2"})
	src := t.TempDir()
	makeTree(t, src)
	mustRsync(t, nil, "-a", src+"/", fmt.Sprintf("rsync://127.0.0.2:%d/backup/", d.Port))
	if diffs := DiffTrees(src, d.Dir); len(diffs) != 0 {
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func TestDaemonFixedPortAndDir(t *testing.T) {
	port := FreePort(t)
	dir := t.TempDir()
	d := StartDaemon(t, DaemonOptions{Module: "mod", Dir: dir, Port: port})
	if d.Port != port || d.Dir != dir || d.Module != "mod" {
		t.Fatalf("options not honoured: %+v", d)
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "x", 0o644)
	mustRsync(t, nil, "-a", src+"/", fmt.Sprintf("rsync://127.0.0.1:%d/mod/", port))
	assertSame(t, src, dir)
}

func TestDaemonPicksAnotherPortWhenTaken(t *testing.T) {
	RequireRsync(t)
	// Simulate losing the FreePort race: a first start on a busy port.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d2 := &Daemon{}
	*d2 = Daemon{
		Module: "backup", Dir: t.TempDir(), Port: busy.Addr().(*net.TCPAddr).Port,
		t: t, confDir: t.TempDir(),
	}
	d2.confPath = filepath.Join(d2.confDir, "rsyncd.conf")
	d2.logPath = filepath.Join(d2.confDir, "rsyncd.log")
	d2.pidPath = filepath.Join(d2.confDir, "rsyncd.pid")
	t.Cleanup(d2.Stop)
	d2.Start()
	if d2.Port == busy.Addr().(*net.TCPAddr).Port {
		t.Fatalf("daemon did not move off the busy port: %d", d2.Port)
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "x", 0o644)
	mustRsync(t, nil, "-a", src+"/", fmt.Sprintf("rsync://127.0.0.1:%d/backup/", d2.Port))
	assertSame(t, src, d2.Dir)
}

func TestDaemonSecrets(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{Secrets: map[string]string{"alice": "s3cret", "bob": "other"}})
	fi, err := os.Stat(d.secretsPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets file mode %v", fi.Mode().Perm())
	}
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "x", 0o644)
	url := fmt.Sprintf("rsync://alice@127.0.0.1:%d/backup/", d.Port)
	if out, err := rsyncCmd(t, []string{"RSYNC_PASSWORD=wrong"}, "-a", src+"/", url); err == nil {
		t.Fatalf("push with a wrong password succeeded:\n%s", out)
	}
	mustRsync(t, []string{"RSYNC_PASSWORD=s3cret"}, "-a", src+"/", url)
	assertSame(t, src, d.Dir)
}

func TestDaemonReadOnly(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{ReadOnly: true})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "x", 0o644)
	out, err := rsyncCmd(t, nil, "-a", src+"/", fmt.Sprintf("rsync://127.0.0.1:%d/backup/", d.Port))
	if err == nil {
		t.Fatalf("push to a read-only module succeeded:\n%s", out)
	}
	if !strings.Contains(out, "read only") && !strings.Contains(out, "read-only") {
		t.Logf("rsync output: %s", out)
	}
}

func TestSSHDPush(t *testing.T) {
	RequireRsync(t)
	s := StartSSHD(t)
	if !strings.Contains(s.Command, fmt.Sprintf("-p %d -i %s ", s.Port, s.KeyFile)) {
		t.Fatalf("unexpected Command %q", s.Command)
	}
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	mustRsync(t, nil, "-a", "-e", s.Command, src+"/", "127.0.0.1:"+dst+"/")
	assertSame(t, src, dst)

	writeFile(t, filepath.Join(src, nameDash+"-dir", "more"), "more\n", 0o644)
	mustRsync(t, nil, "-a", "--delete", "-e", s.Command, src+"/", "127.0.0.1:"+dst+"/")
	assertSame(t, src, dst)
}

func TestProcess(t *testing.T) {
	t.Run("output and exit code", func(t *testing.T) {
		p := StartProcess(t, "sh", "-c", "echo out; echo err >&2; exit 3")
		code, err := p.Wait(10 * time.Second)
		if err != nil || code != 3 {
			t.Fatalf("Wait = %d, %v", code, err)
		}
		if out := p.Output(); !strings.Contains(out, "out\n") || !strings.Contains(out, "err\n") {
			t.Errorf("Output = %q", out)
		}
		if err := p.Signal(syscall.SIGTERM); err == nil {
			t.Error("Signal to an exited process succeeded")
		}
		p.Kill() // must not block or panic after exit
	})
	t.Run("wait output, signal, timeout", func(t *testing.T) {
		p := StartProcess(t, "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done")
		if !p.WaitOutput("ready", 10*time.Second) {
			t.Fatalf("no ready line: %q", p.Output())
		}
		if p.WaitOutput("never printed", 100*time.Millisecond) {
			t.Fatal("WaitOutput found a string that was never printed")
		}
		if _, err := p.Wait(100 * time.Millisecond); err == nil {
			t.Fatal("Wait on a running process did not time out")
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(10 * time.Second)
		if err != nil || code != 7 {
			t.Fatalf("Wait = %d, %v; output %q", code, err, p.Output())
		}
		if !strings.Contains(p.Output(), "got-term") {
			t.Errorf("Output = %q", p.Output())
		}
	})
	t.Run("kill reaps the process group", func(t *testing.T) {
		p := StartProcess(t, "sh", "-c", "sleep 300 & echo child=$!; wait")
		if !p.WaitOutput("child=", 10*time.Second) {
			t.Fatalf("no child line: %q", p.Output())
		}
		var child int
		deadline := time.Now().Add(5 * time.Second)
		for child == 0 && time.Now().Before(deadline) {
			_, _ = fmt.Sscanf(p.Output()[strings.Index(p.Output(), "child="):], "child=%d", &child)
			time.Sleep(10 * time.Millisecond)
		}
		if child == 0 {
			t.Fatalf("cannot parse child pid from %q", p.Output())
		}
		p.Kill()
		code, err := p.Wait(time.Second)
		if err != nil || code != -1 {
			t.Fatalf("Wait after Kill = %d, %v", code, err)
		}
		// The orphaned sleep is reparented and reaped by init; poll until
		// it is gone (or a zombie, which is gone for our purposes).
		deadline = time.Now().Add(5 * time.Second)
		for {
			state, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
			if err != nil || strings.Contains(string(state), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %d survived Kill: %s", child, state)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestFreePort(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("FreePort %d is not free: %v", port, err)
	}
	l.Close()
}

func TestModuleRoot(t *testing.T) {
	root, err := findModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module github.com/sersyncd/sersyncd") {
		t.Fatalf("root %s: go.mod %q, %v", root, b, err)
	}
}

// TestBuildPackage checks the build mechanism on a throwaway module, so that
// it does not depend on the state of cmd/sersyncd.
func TestBuildPackage(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	mod := t.TempDir()
	writeFile(t, filepath.Join(mod, "go.mod"), "module example.com/tiny\n\ngo 1.22\n", 0o644)
	writeFile(t, filepath.Join(mod, "cmd", "tiny", "main.go"), "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"tiny ok\") }\n", 0o644)
	sub := filepath.Join(mod, "cmd", "tiny")
	root, err := moduleRootFrom(sub)
	if err != nil || root != mod {
		t.Fatalf("moduleRootFrom(%s) = %s, %v", sub, root, err)
	}
	bin, err := buildPackage(root, "./cmd/tiny", filepath.Join(t.TempDir(), "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || string(out) != "tiny ok\n" {
		t.Fatalf("running %s: %q, %v", bin, out, err)
	}
	writeFile(t, filepath.Join(mod, "cmd", "broken", "main.go"), "package main\n\nfunc main() { undefined() }\n", 0o644)
	if _, err := buildPackage(root, "./cmd/broken", filepath.Join(t.TempDir(), "broken")); err == nil || !strings.Contains(err.Error(), "undefined") {
		t.Fatalf("broken build: err = %v, want the compiler output", err)
	}
}
