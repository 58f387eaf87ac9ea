package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestTargetPushedWithinSecondsOfItsReturn: a target down long enough for
// an 8 s backoff is pushed within 5 s of its return, not when the backoff
// ends (the probe sees it answer again); byte for byte.
func TestTargetPushedWithinSecondsOfItsReturn(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "10m"})
	e.start()
	d := e.targets[0]
	d.Stop()
	for i := 0; i < 50; i++ {
		e.write(fmt.Sprintf("f%02d", i), strings.Repeat("down ", i))
	}
	waitLog(t, e, 30*time.Second, "retrying in 8s")
	e.write("last", "written just before the target returns")
	d.Start()
	back := time.Now()
	e.converge(5*time.Second, "within 5 s of the target's return")
	t.Logf("equal %v after the target came back", time.Since(back).Round(time.Millisecond))
	if !strings.Contains(e.proc.Output(), "target answers again") {
		t.Errorf("the return was not seen by a probe:\n%s", tail(e.proc.Output(), 3000))
	}
}

// TestChmodPushesAParkedFile: a file the pushing rsync cannot read fails
// on its own (exit 23) and is parked; a chmod that makes it readable is
// pushed at once, with the attrib switch off, not at the end of its park.
// rsync runs as nobody here, so that root's reading everything does not
// hide the failure.
func TestChmodPushesAParkedFile(t *testing.T) {
	testutil.Integration(t)
	bin := filepath.Dir(testutil.RsyncAsNobody(t))
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "10m"})
	// After the rsync daemon started: only sersyncd's rsyncs are nobody's.
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	if e.newAttrib() {
		t.Fatal("the test needs the attrib switch off")
	}
	// nobody must reach the source.
	for _, dir := range []string{filepath.Dir(e.dir), e.dir} {
		must(t, os.Chmod(dir, 0o755))
	}
	e.start()
	e.write("readable", "r")
	must(t, os.WriteFile(e.path("secret"), []byte("not for nobody"), 0o600))
	// Parked 1 s, then 2 s, then 4 s.
	waitLog(t, e, 20*time.Second, "it is retried in 4s")
	must(t, os.Chmod(e.path("secret"), 0o644))
	changed := time.Now()
	e.converge(2*time.Second, "within 2 s of the chmod (the park is 4 s)")
	t.Logf("equal %v after the chmod", time.Since(changed).Round(time.Millisecond))
	e.waitClean(5*time.Second, "", "status after the chmod")
}

// newAttrib says whether the env's config turns the attrib switch on.
func (e *env) newAttrib() bool {
	conf, err := os.ReadFile(e.config)
	must(e.t, err)
	return strings.Contains(string(conf), `<attrib start="true"/>`)
}
