package rsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
)

// options returns the argv before the "--" that ends the options.
func options(t *testing.T, args []string) []string {
	t.Helper()
	for i, a := range args {
		if a == "--" {
			return args[:i]
		}
	}
	t.Fatalf("no \"--\" in %q: a path could be parsed as an option", args)
	return nil
}

func hasOption(opts []string, prefix string) bool {
	for _, o := range opts {
		if o == prefix || strings.HasPrefix(o, prefix+"=") {
			return true
		}
	}
	return false
}

func TestArgs(t *testing.T) {
	defTimeout := "--timeout=" + strconv.Itoa(int(config.DefaultRsyncTimeout.Seconds()))
	conTimeout := "--contimeout=" + strconv.Itoa(int(connectTimeout.Seconds()))
	listed := []string{"--ignore-times", "--relative", "--from0", "--files-from=-", "--delete-missing-args", "--force", "--links"}
	full := []string{"--recursive", "--delete", "--force", "--from0", "--exclude-from=-", "--links"}

	tests := []struct {
		name     string
		target   *Target
		excludes []string // FullPushArgs only
		want     []string // options both argvs carry
		wantFull []string // options only the full push carries
		absent   []string // option names neither may carry
	}{
		{
			name: "daemon with port and password",
			target: New(Options{Source: "/data", Dest: "10.0.0.1::mod", Params: []string{"-artuz"},
				Port: 8873, PasswordFile: "/etc/rsync.pas", Timeout: 100 * time.Second}),
			want:   []string{"--timeout=100", conTimeout, "--sockopts=TCP_NODELAY", "--port=8873", "--password-file=/etc/rsync.pas"},
			absent: []string{"--rsh"},
		},
		{
			name:   "daemon defaults",
			target: New(Options{Source: "/data", Dest: "user@host::mod"}),
			want:   []string{defTimeout, conTimeout, "--sockopts=TCP_NODELAY"},
			absent: []string{"--rsh", "--port", "--password-file"},
		},
		{
			name: "ssh",
			target: New(Options{Source: "/srv/www", Dest: "host:/backup", Params: []string{"-a", "-z"},
				Port: 2222, SSHCommand: "ssh -p 2222", Timeout: 7 * time.Second}),
			want:   []string{"--timeout=7", "--rsh=ssh -p 2222"},
			absent: []string{"--sockopts", "--port", "--contimeout", "--password-file"},
		},
		{
			name:     "full push with crontab excludes",
			target:   New(Options{Source: "/data", Dest: "h::m"}),
			excludes: []string{"*.php", "cache/"},
			want:     []string{defTimeout},
			wantFull: []string{"--exclude=*.php", "--exclude=cache/"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			argvs := []struct {
				name string
				args []string
				want []string
			}{
				{"PushArgs", tc.target.PushArgs(), append(append([]string{}, tc.want...), listed...)},
				{"FullPushArgs", tc.target.FullPushArgs(tc.excludes), append(append(append([]string{}, tc.want...), full...), tc.wantFull...)},
			}
			for _, a := range argvs {
				opts := options(t, a.args)
				// The user's params come first so ours win where rsync
				// takes the last of a repeated option.
				if got := opts[:len(tc.target.opt.Params)]; len(tc.target.opt.Params) > 0 && !reflect.DeepEqual(got, tc.target.opt.Params) {
					t.Errorf("%s starts with %q, want the user's params %q", a.name, got, tc.target.opt.Params)
				}
				ends := []string{"--", tc.target.opt.Source + "/", tc.target.opt.Dest + "/"}
				if got := a.args[len(a.args)-3:]; !reflect.DeepEqual(got, ends) {
					t.Errorf("%s ends with %q, want %q", a.name, got, ends)
				}
				for _, w := range a.want {
					if !containsString(opts, w) {
						t.Errorf("%s lacks %q: %q", a.name, w, a.args)
					}
				}
				for _, n := range tc.absent {
					if hasOption(opts, n) {
						t.Errorf("%s has %s: %q", a.name, n, a.args)
					}
				}
			}
			if hasOption(options(t, tc.target.PushArgs()), "--exclude") {
				t.Error("PushArgs carries the crontab excludes")
			}
		})
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestEscapePattern(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "dir/file.txt", "dir/file.txt"},
		// Without a wildcard rsync takes a rule literally, backslash included.
		{"bracket close alone", "a]b", "a]b"},
		{"backslash alone", `a\b`, `a\b`},
		{"star", "f*.txt", `f\*.txt`},
		{"question mark", "a?b", `a\?b`},
		{"brackets", "[x]", `\[x\]`},
		{"backslash with wildcard", `a\b*`, `a\\b\*`},
		{"open bracket triggers all", `[a]\`, `\[a\]\\`},
		{"in a directory", "d*r/sub/f", `d\*r/sub/f`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := escapePattern(tc.in); got != tc.want {
				t.Errorf("escapePattern(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestExitError(t *testing.T) {
	tests := []struct {
		name    string
		err     ExitError
		want    []string
		notWant []string
		exact   string
	}{
		{
			name: "summary line is skipped",
			err: ExitError{Code: 23, Stderr: "rsync: [sender] send_files failed to open \"/data/x\": Permission denied (13)\n" +
				"rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [sender=3.2.7]\n"},
			want:    []string{"rsync exit 23", "partial transfer due to error", `failed to open "/data/x": Permission denied (13)`},
			notWant: []string{"rsync error:"},
		},
		{
			name:    "blank lines after the message",
			err:     ExitError{Code: 10, Stderr: "rsync: failed to connect to 10.0.0.1: Connection refused (111)\nrsync error: error in socket IO (code 10)\n\n  \n"},
			want:    []string{"rsync exit 10", "error in socket I/O", "Connection refused (111)"},
			notWant: []string{"rsync error:"},
		},
		{
			name: "only a summary line",
			err:  ExitError{Code: 12, Stderr: "rsync error: error in rsync protocol data stream (code 12)"},
			want: []string{"rsync exit 12", "rsync error: error in rsync protocol data stream"},
		},
		{"no stderr", ExitError{Code: 10}, nil, nil, "rsync exit 10 (error in socket I/O)"},
		{"unknown code", ExitError{Code: 99}, []string{"rsync exit 99", "unknown rsync exit code"}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.err.Error()
			if tc.exact != "" && got != tc.exact {
				t.Errorf("Error() = %q, want %q", got, tc.exact)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Error() = %q, lacks %q", got, w)
				}
			}
			for _, n := range tc.notWant {
				if strings.Contains(got, n) {
					t.Errorf("Error() = %q, has %q", got, n)
				}
			}
		})
	}
}

func TestExitMeaning(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{10, "error in socket I/O"},
		{5, "error starting client-server protocol"},
		{23, "partial transfer due to error"},
		{30, "timeout in data send/receive"},
		{-1, "unknown rsync exit code"},
	}
	for _, tc := range tests {
		if got := ExitMeaning(tc.code); got != tc.want {
			t.Errorf("ExitMeaning(%d) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// fakeRsync writes a script that records its argv and stdin and then runs
// body, so Push can be checked end to end without rsync or a network.
func fakeRsync(t *testing.T, body string) (bin, argsFile, stdinFile string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "rsync")
	argsFile = filepath.Join(dir, "args")
	stdinFile = filepath.Join(dir, "stdin")
	script := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + argsFile + "\ncat > " + stdinFile + "\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile, stdinFile
}

func TestPushRunsBinary(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	// rsync would read names starting with ';' or '#' as comments.
	paths := []string{"a", "-rf", "new\nline", "sp ace/f", ";semi", "#hash"}
	tests := []struct {
		name     string
		body     string
		wantCode int // 0: no error; -1: not an ExitError
		wantMsg  string
	}{
		{"success", "exit 0", 0, ""},
		// Vanished files are events of their own; they are not a failure.
		{"vanished files", "exit 24", 0, ""},
		{"partial transfer", "echo 'rsync: send_files failed: Permission denied (13)' >&2\necho 'rsync error: some files (code 23)' >&2\nexit 23", 23, "Permission denied (13)"},
		{"protocol start", "echo '@ERROR: auth failed on module m' >&2\nexit 5", 5, "@ERROR: auth failed on module m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin, argsFile, stdinFile := fakeRsync(t, tc.body)
			// "sp ace" a directory: a path below a missing one goes out as
			// that one (typechange.go).
			src := t.TempDir()
			if err := os.Mkdir(filepath.Join(src, "sp ace"), 0o755); err != nil {
				t.Fatal(err)
			}
			tgt := New(Options{Binary: bin, Source: src, Dest: "h::m"})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tgt.Push(ctx, change.Of(paths))

			var ee *ExitError
			switch {
			case tc.wantCode == 0 && err != nil:
				t.Fatalf("Push: %v", err)
			case tc.wantCode > 0 && (!errors.As(err, &ee) || ee.Code != tc.wantCode):
				t.Fatalf("Push error = %v, want exit %d", err, tc.wantCode)
			case tc.wantCode > 0 && !strings.Contains(err.Error(), tc.wantMsg):
				t.Fatalf("Push error = %q, lacks %q", err, tc.wantMsg)
			}

			stdin, _ := os.ReadFile(stdinFile)
			if want := "./" + strings.Join(paths, "\x00./") + "\x00"; string(stdin) != want {
				t.Errorf("stdin = %q, want %q", stdin, want)
			}
			args, _ := os.ReadFile(argsFile)
			want := strings.Join(tgt.PushArgs(), "\n") + "\n"
			if string(args) != want {
				t.Errorf("argv = %q, want %q", args, want)
			}
		})
	}
}

func TestPushCancelKillsProcessGroup(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	// The child stands for ssh: it must die with rsync, or it would hold
	// the stderr pipe and Push would wait for WaitDelay.
	bin, _, _ := fakeRsync(t, "sleep 60 & wait")
	tgt := New(Options{Binary: bin, Source: "/src", Dest: "h::m"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := tgt.Push(ctx, change.Of([]string{"a"}))
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Push returned %v after its context ended", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Push error = %v, want one wrapping context.DeadlineExceeded", err)
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		t.Fatalf("a killed push is reported as rsync exit %d", ee.Code)
	}
}

func TestWithoutUpdate(t *testing.T) {
	tests := []struct {
		name       string
		params     []string
		wantParams []string
	}{
		{"stock", []string{"-artuz"}, []string{"-artz"}},
		{"alone", []string{"-a", "-u", "-z"}, []string{"-a", "-z"}},
		{"long", []string{"-a", "--update", "--bwlimit=100"}, []string{"-a", "--bwlimit=100"}},
		{"value after a letter that takes one", []string{"-auB1024u", "-Tuu"}, []string{"-aB1024u", "-Tuu"}},
		{"none", []string{"-az", "--chmod=u+rw"}, []string{"-az", "--chmod=u+rw"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := withoutUpdate(tc.params); !reflect.DeepEqual(got, tc.wantParams) {
				t.Fatalf("withoutUpdate(%q) = %q, want %q", tc.params, got, tc.wantParams)
			}
		})
	}
}

func TestVerifyArgs(t *testing.T) {
	for _, keep := range []bool{false, true} {
		tgt := New(Options{Source: "/data", Dest: "h::m", Params: []string{"-artuz"}, KeepDeleted: keep,
			OnBytesSent: func(string, int64) {}})
		for _, checksum := range []bool{false, true} {
			args := tgt.VerifyArgs(checksum)
			opts := options(t, args)
			for _, want := range []string{"-artz", "--links", "--recursive", "--delete", "--dry-run", "--itemize-changes", "--out-format=%i %n", "--from0", "--exclude-from=-"} {
				if !hasOption(opts, want) {
					t.Errorf("keep %t checksum %t: %q lacks %s", keep, checksum, args, want)
				}
			}
			// A dry run must not do what only a real push may.
			for _, absent := range []string{"-artuz", "--force", "--ignore-times", "--stats", "--files-from", "--delete-missing-args"} {
				if hasOption(opts, absent) {
					t.Errorf("keep %t checksum %t: %q has %s", keep, checksum, args, absent)
				}
			}
			if hasOption(opts, "--checksum") != checksum {
				t.Errorf("checksum %t: %q", checksum, args)
			}
			if tail := args[len(args)-2:]; tail[0] != "/data/" || tail[1] != "h::m/" {
				t.Errorf("source and destination: %q", tail)
			}
		}
	}
}
