package main

import (
	"bytes"
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
