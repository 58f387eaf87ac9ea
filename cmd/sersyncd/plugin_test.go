package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestCommandPluginGetsEachPathAsOneArgument runs sersync's command plugin
// through the built binary: once per pushed path (not once per target),
// hostile names intact, nothing run by a shell.
func TestCommandPluginGetsEachPathAsOneArgument(t *testing.T) {
	testutil.Integration(t)
	out := filepath.Join(t.TempDir(), "calls")
	// The path arrives as $1 and is only ever expanded inside quotes.
	prefix := `/bin/sh -c 'printf "%s\0" "$1" >> ` + out + `'`
	e := newEnv(t, envOptions{targets: 2, commandPrefix: prefix})
	e.start()
	names := []string{"plain", "with space", "$(touch pwned)", "new\nline", "-e sh", "quote'd"}
	for _, n := range names {
		e.write(n, n)
	}
	e.converge(10*time.Second, "files")
	var want []string
	for _, n := range names {
		want = append(want, filepath.Join(e.src, n))
	}
	slices.Sort(want)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		got := []string{}
		for _, f := range bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0}) {
			if len(f) > 0 {
				got = append(got, string(f))
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("command plugin calls:\n got %q\nwant %q\n%s", got, want, e.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(e.src, "pwned")); err == nil {
		t.Fatal("a name ran as a command")
	}
}

// TestCommandPluginFailureIsRecorded: a failing command (ignoreError off)
// leaves a line in the failLog naming the path.
func TestCommandPluginFailureIsRecorded(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1, commandPrefix: "/bin/false"})
	e.start()
	e.write("some file", "x")
	e.converge(10*time.Second, "the file")
	failLog := filepath.Join(e.dir, "fail.log")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(failLog)
		if bytes.Contains(b, []byte(`target="plugin command"`)) && bytes.Contains(b, []byte(`"some file"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure record of the command plugin in the failLog:\n%s\n%s", b, e.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
