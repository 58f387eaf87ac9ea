package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestWrittenFilesNeverFollowSymlinks: a symbolic link at the failLog, log
// file or pid file path (sersync's stock failLog is in /tmp, where anyone
// can plant one), to a file or dangling, is refused with one line by
// `sersyncd check` and at start, exit 2; the file it points to is left
// untouched, or never created. So is a file in a directory that everyone
// may write to without the sticky bit.
func TestWrittenFilesNeverFollowSymlinks(t *testing.T) {
	bin := testutil.BuildBinary(t)
	cases := []struct {
		name   string
		file   string // which path is planted: faillog, log or pid
		plant  string // link, dangling or open-dir
		detach bool   // the start is with -d
	}{
		{"failLog link to a file", "faillog", "link", false},
		{"failLog dangling link", "faillog", "dangling", false},
		{"failLog in a world-writable directory", "faillog", "open-dir", false},
		{"log file link to a file", "log", "link", true},
		{"log file dangling link", "log", "dangling", true},
		{"pid file link to a file", "pid", "link", true},
		{"pid file dangling link", "pid", "dangling", true},
		{"pid file in a world-writable directory", "pid", "open-dir", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			must(t, os.Mkdir(src, 0o755))
			files := map[string]string{
				"faillog": filepath.Join(dir, "fail.log"),
				"log":     filepath.Join(dir, "sersyncd.log"),
				"pid":     filepath.Join(dir, "sersyncd.pid"),
			}
			planted := files[tc.file]
			victim := filepath.Join(t.TempDir(), "victim")
			switch tc.plant {
			case "link":
				must(t, os.WriteFile(victim, []byte("precious\n"), 0o644))
				must(t, os.Symlink(victim, planted))
			case "dangling":
				must(t, os.Symlink(victim, planted))
			case "open-dir":
				open := filepath.Join(dir, "open")
				must(t, os.Mkdir(open, 0o755))
				must(t, os.Chmod(open, 0o777))
				planted = filepath.Join(open, filepath.Base(planted))
				files[tc.file] = planted
			}
			conf := filepath.Join(dir, "confxml.xml")
			xml := `<head version="2.5"><sersync><localpath watch="` + src + `"><remote ip="127.0.0.1" name="m"/></localpath>` +
				`<failLog path="` + files["faillog"] + `" timeToExecute="60"/></sersync>` +
				`<sersyncd logFile="` + files["log"] + `" pidFile="` + files["pid"] + `"/></head>`
			must(t, os.WriteFile(conf, []byte(xml), 0o644))
			db := filepath.Join(dir, "queue.db")
			for _, args := range [][]string{
				{"check", "-o", conf},
				append([]string{"-o", conf, "--db", db}, map[bool][]string{true: {"-d"}}[tc.detach]...),
			} {
				p := testutil.StartProcess(t, bin, args...)
				code, err := p.Wait(10 * time.Second)
				if err != nil {
					p.Kill()
				}
				out := strings.TrimRight(p.Output(), "\n")
				if code != 2 || strings.Contains(out, "\n") || !strings.Contains(out, planted) {
					t.Fatalf("sersyncd %s: exit %d (%v); want 2 and one line naming %s:\n%s", strings.Join(args, " "), code, err, planted, out)
				}
				t.Logf("sersyncd %s: %s", args[0], out)
			}
			b, err := os.ReadFile(victim)
			switch tc.plant {
			case "link":
				if string(b) != "precious\n" {
					t.Fatalf("the link's target was written: %q, %v", b, err)
				}
			case "dangling":
				if !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the dangling link's target was created: %q, %v", b, err)
				}
			}
			if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the refused start made the queue file (%v)", err)
			}
		})
	}
}
