package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestFullPushShowsProgress(t *testing.T) {
	testutil.Integration(t)
	cases := []struct {
		name     string
		terminal bool
		want     string
	}{
		{"log lines without a terminal", false, "full push: "},
		{"bars on a terminal", true, "] 100 %"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{targets: 2})
			for i := 0; i < 50; i++ {
				e.write(fmt.Sprintf("f%02d", i), strings.Repeat(fmt.Sprint(i), 20000))
			}
			if !tc.terminal {
				p := e.start("-r")
				e.converge(20*time.Second, "full push")
				if !p.WaitOutput(tc.want, 5*time.Second) {
					t.Fatalf("no %q in:\n%s", tc.want, p.Output())
				}
				return
			}
			script, err := exec.LookPath("script")
			if err != nil {
				t.Skip("no script(1) to give sersyncd a terminal")
			}
			out := filepath.Join(e.dir, "tty.out")
			// script(1) takes one command line; the temp paths hold no spaces.
			// sersyncd runs in script's own session: its pid (the shell's,
			// kept by exec) is how the test ends it.
			pidFile := filepath.Join(e.dir, "tty.pid")
			line := fmt.Sprintf("stty cols 160 rows 40; echo $$ > %s; exec %s -r -o %s --db %s", pidFile, e.bin, e.config, e.db)
			p := testutil.StartProcess(t, script, "-q", "-f", "-c", line, out)
			t.Cleanup(func() { killPidFile(t, pidFile) })
			e.converge(20*time.Second, "full push on a terminal")
			deadline := time.Now().Add(10 * time.Second)
			for {
				b, _ := os.ReadFile(out)
				if strings.Count(string(b), tc.want) >= 2 { // one bar per target
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no progress bars %q per target in:\n%s", tc.want, b)
				}
				time.Sleep(100 * time.Millisecond)
			}
			p.Kill()
		})
	}
}

// killPidFile ends the process whose pid the file holds, and waits for it.
func killPidFile(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		// A zombie still answers to signal 0; its files are closed.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
			return
		}
	}
	t.Errorf("process %d did not end", pid)
}
