package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestFullPushShowsProgress(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
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
			line := fmt.Sprintf("stty cols 160 rows 40; exec %s -r -o %s --db %s", e.bin, e.config, e.db)
			p := testutil.StartProcess(t, script, "-q", "-f", "-c", line, out)
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
