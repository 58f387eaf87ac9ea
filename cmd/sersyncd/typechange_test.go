package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestDeploySwitchesReleases is the web deploy: current is a directory
// whose index.html is being pushed when it is replaced by a symlink to the
// new release (rm -rf current && ln -s releases/N current), then the
// symlink by a directory again. The targets must follow each switch, with
// nothing left failing (sersyncd kept current a directory on the target,
// status clean, and a directory turned into a file failed forever).
func TestDeploySwitchesReleases(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	for _, kind := range []string{"daemon", "ssh"} {
		t.Run(kind, func(t *testing.T) {
			o := envOptions{targets: 1}
			if kind == "ssh" {
				o.ssh = testutil.StartSSHD(t)
			}
			e := newEnv(t, o)
			e.start()
			page := strings.Repeat("<p>release</p>\n", 20000) // 300 kB: its push takes a while
			for n := 1; n <= 4; n++ {
				rel := fmt.Sprintf("releases/%d", n)
				must(t, os.MkdirAll(e.path(rel+"/css"), 0o755))
				e.write(rel+"/index.html", fmt.Sprintf("release %d\n%s", n, page))
				e.write(rel+"/css/site.css", fmt.Sprintf("body{} /* %d */", n))
				// A directory again (as after a rollback by copy), written to,
				// and replaced while that write is pushed.
				must(t, os.RemoveAll(e.path("current")))
				must(t, os.MkdirAll(e.path("current/css"), 0o755))
				e.write("current/index.html", fmt.Sprintf("copied %d\n%s", n, page))
				e.write("current/css/site.css", "copied")
				time.Sleep(time.Duration(n*15) * time.Millisecond)
				must(t, os.RemoveAll(e.path("current")))
				must(t, os.Symlink(rel, e.path("current")))
				e.converge(10*time.Second, "after switching to "+rel)
			}
			// And a directory turned into a file while paths below it wait.
			must(t, os.MkdirAll(e.path("a/b/c"), 0o755))
			e.write("a/b/c/f", "f")
			must(t, os.RemoveAll(e.path("a/b")))
			e.write("a/b", "a file now")
			e.converge(10*time.Second, "directory turned into a file")
			deadline := time.Now().Add(10 * time.Second)
			for {
				bad := ""
				for _, ts := range e.status().Targets {
					if ts.Failed > 0 || ts.Pending > 0 || ts.ConsecutiveFailures > 0 {
						bad += fmt.Sprintf("%+v\n", ts)
					}
				}
				if bad == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("status after the switches:\n%s\n%s", bad, tail(e.proc.Output(), 3000))
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}
