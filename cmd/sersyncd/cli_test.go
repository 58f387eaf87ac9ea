package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const stockConfig = "../../../shared/reference/sersync-2.5.4-confxml.xml"

// stockWithWatch is sersync's stock file with only its watch path pointed
// at a directory that exists here.
func stockWithWatch(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(stockConfig)
	if err != nil {
		t.Skipf("sersync's stock config is not beside the project (%v)", err)
	}
	dir := t.TempDir()
	data = bytes.ReplaceAll(data, []byte(`watch="/opt/tongbu"`), []byte(`watch="`+dir+`"`))
	path := filepath.Join(t.TempDir(), "confxml.xml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommandLine(t *testing.T) {
	stock := stockWithWatch(t)
	bad := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(bad, []byte("<head>\n<sersync>\n<localpath watch=\"/nonexistent/x\">\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring expected in stdout
		stderr string // substring expected in the one stderr line
	}{
		{"help", []string{"--help"}, 0, "Exit codes:", ""},
		{"version", []string{"--version"}, 0, "sersyncd ", ""},
		{"check the stock file", []string{"check", "-o", stock}, 0, "127.0.0.1::tongbu1", ""},
		{"check shows the rsync command line", []string{"check", "-o", stock}, 0, "--files-from=-", ""},
		{"check a missing file", []string{"check", "-o", "/nonexistent.xml"}, 2, "", "/nonexistent.xml"},
		{"check malformed xml", []string{"check", "-o", bad}, 2, "", "bad.xml"},
		{"unknown flag", []string{"--bogus"}, 2, "", "bogus"},
		{"bad worker count", []string{"-n", "0", "-o", stock}, 2, "", "-n 0"},
		{"stray argument", []string{"-o", stock, "extra"}, 2, "", `"extra"`},
		{"bad log format", []string{"--log-format", "xml", "-o", stock}, 2, "", "log-format"},
		{"bad log target", []string{"--log-target", "journal", "-o", stock}, 2, "", "--log-target"},
		{"bad syslog facility", []string{"--log-target", "syslog", "--syslog-facility", "local9", "-o", stock}, 2, "", "--syslog-facility"},
		{"bad syslog tag", []string{"--log-target", "syslog", "--syslog-tag", "a b", "-o", stock}, 2, "", "--syslog-tag"},
		{"daemon with a bad config", []string{"-o", bad}, 2, "", "bad.xml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Fatalf("stdout lacks %q:\n%s", tc.stdout, out.String())
			}
			if tc.code != 0 {
				msg := strings.TrimRight(errb.String(), "\n")
				if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.stderr) {
					t.Fatalf("want one stderr line naming %q, got:\n%s", tc.stderr, errb.String())
				}
			}
		})
	}
}

// TestEmptyPathFlags: an empty file or address flag is a bad flag. Each of
// them falls back to the config or a default when left out, so an empty
// one meant a file the operator did not write (--db "" created
// /var/lib/sersyncd/queue.db).
func TestEmptyPathFlags(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "confxml.xml")
	xml := `<head version="2.5"><sersync><localpath watch="` + dir + `"><remote ip="127.0.0.1" name="m"/></localpath></sersync></head>`
	if err := os.WriteFile(conf, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string // substring expected in the one stderr line
	}{
		// An empty file or address flag would fall back to a default the
		// operator did not write (--db "" created /var/lib/sersyncd/queue.db).
		{"empty --db", []string{"-o", conf, "--db", ""}, 2, "", `--db ""`},
		{"empty --db=", []string{"-o", conf, "--db="}, 2, "", `--db ""`},
		{"empty -o", []string{"-o", ""}, 2, "", `-o ""`},
		{"empty --log-file", []string{"-o", conf, "-d", "--log-file", ""}, 2, "", `--log-file ""`},
		{"empty --pid-file", []string{"-o", conf, "-d", "--pid-file", ""}, 2, "", `--pid-file ""`},
		{"empty --metrics", []string{"-o", conf, "--metrics", ""}, 2, "", `--metrics ""`},
		{"check with empty -o", []string{"check", "-o", ""}, 2, "", `-o ""`},
		{"status with empty --db", []string{"status", "-o", conf, "--db", ""}, 2, "", `--db ""`},
		{"retry with empty --db", []string{"retry", "-o", conf, "--db", ""}, 2, "", `--db ""`},
		{"status with empty -o", []string{"status", "-o", ""}, 2, "", `-o ""`},
		{"verify with empty -o", []string{"verify", "-o", ""}, 2, "", `-o ""`},
		{"verify with empty --db", []string{"verify", "-o", conf, "--db", ""}, 2, "", `--db ""`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tc.code, errb.String())
			}
			msg := strings.TrimRight(errb.String(), "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, tc.stderr) {
				t.Fatalf("want one stderr line naming %q, got:\n%s", tc.stderr, errb.String())
			}
		})
	}
}

// TestSersyncFlagClusters: sersync read its flags with getopt, and its
// guides start it as `sersync2 -dro FILE`.
func TestSersyncFlagClusters(t *testing.T) {
	cases := []struct {
		name string
		args string
		want string
	}{
		{"-dro", "-dro /etc/confxml.xml", "-d -r -o /etc/confxml.xml"},
		{"-rdo", "-rdo /etc/c.xml", "-r -d -o /etc/c.xml"},
		{"value in the cluster", "-ro/etc/c.xml", "-r -o /etc/c.xml"},
		{"-n in a cluster", "-rn5 -o c.xml", "-r -n 5 -o c.xml"},
		{"-n then its value", "-dn 4", "-d -n 4"},
		{"help", "-dh", "-d -h"},
		{"separate flags untouched", "-d -r -o c.xml", "-d -r -o c.xml"},
		{"a long flag with one dash", "-db /x -dro c.xml", "-db /x -d -r -o c.xml"},
		{"a value that looks like a cluster", "--log-file -dr -o c.xml", "--log-file -dr -o c.xml"},
		{"a value after one dash", "-log-file -dr", "-log-file -dr"},
		{"name=value", "-db=/x -ro c.xml", "-db=/x -r -o c.xml"},
		{"unknown letter left for the error", "-drx", "-drx"},
		{"sersync's -m left for the error", "-dm socket", "-dm socket"},
		{"after --", "-- -dr", "-- -dr"},
		{"after a non-flag", "extra -dr", "extra -dr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f daemonFlags
			got := strings.Join(expandClusters(newDaemonFlagSet(&f, io.Discard), strings.Fields(tc.args)), " ")
			if got != tc.want {
				t.Errorf("expandClusters(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
	// Through run: the cluster is read as sersync read it, so the error is
	// about the config, not about a flag.
	bad := filepath.Join(t.TempDir(), "bad.xml")
	must(t, os.WriteFile(bad, []byte("<head>\n"), 0o644))
	var out, errb bytes.Buffer
	if code := run([]string{"-dro", bad}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "bad.xml") {
		t.Fatalf("-dro %s: exit %d, stderr %q", bad, code, errb.String())
	}
}
