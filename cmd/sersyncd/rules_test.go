package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// rsyncReference is what rsync itself makes of src with the rules file: the
// tree every target must equal.
func rsyncReference(t *testing.T, e *env) string {
	t.Helper()
	ref := filepath.Join(e.dir, "reference")
	out, err := exec.Command("rsync", "-a", "--delete", "--filter=merge "+filepath.Join(e.dir, "filter.rules"),
		e.src+"/", ref+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("reference rsync: %v\n%s", err, out)
	}
	return ref
}

func waitEqualsReference(t *testing.T, e *env, what string) {
	t.Helper()
	ref := rsyncReference(t, e)
	for _, d := range e.targets {
		testutil.WaitConverged(t, ref, d.Dir, 20*time.Second, what, d.Module)
	}
}

// TestRsyncFilterRules is <rsyncFilter file>: rules in rsync's syntax, as
// lsyncd users keep them. Every target must hold exactly what rsync itself
// transfers with those rules: after the full push at start (-r, where rsync
// applies them) and after live changes (where sersyncd decides per path).
func TestRsyncFilterRules(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2, rules: []string{
		"# keep everything below keep/, no temporaries, no build output",
		"+ keep/***",
		"- *.tmp",
		"- /build/",
		"+ */",
		"+ *.txt",
		"+ *.html",
		"- *",
	}})
	tree := func(tag string) {
		for _, p := range []string{"keep/a.bin", "keep/x.tmp", "a.txt", "a.tmp", "b.bin", "web/index.html",
			"web/app.js", "build/out.txt", "src/build/kept.txt", "deep/er/f.txt", "deep/er/g.tmp"} {
			must(t, os.MkdirAll(filepath.Dir(e.path(p)), 0o755))
			e.write(p, tag+" "+p)
		}
	}
	tree("before")
	// A target-side file the rules exclude is protected from --delete, as
	// rsync does.
	must(t, os.WriteFile(filepath.Join(e.targets[0].Dir, "target-only.bin"), []byte("x"), 0o644))
	e.start("-r")
	if !e.proc.WaitOutput("full push done", 20*time.Second) {
		t.Fatalf("no full push:\n%s", e.proc.Output())
	}
	// The reference has no target-only.bin: compare the first target
	// without it, after checking it is still there.
	if _, err := os.Stat(filepath.Join(e.targets[0].Dir, "target-only.bin")); err != nil {
		t.Fatalf("an excluded file on the target was deleted: %v", err)
	}
	must(t, os.Remove(filepath.Join(e.targets[0].Dir, "target-only.bin")))
	waitEqualsReference(t, e, "full push with rsync rules")

	tree("live")
	e.write("web/new.html", "new")
	e.write("web/new.tmp", "never")
	must(t, os.RemoveAll(e.path("deep")))
	waitEqualsReference(t, e, "live changes with rsync rules")
	for _, d := range e.targets {
		for _, p := range []string{"a.tmp", "b.bin", "build", "web/app.js", "web/new.tmp"} {
			if _, err := os.Lstat(filepath.Join(d.Dir, p)); err == nil {
				t.Fatalf("%s reached %s though the rules exclude it", p, d.Module)
			}
		}
	}

	p := testutil.StartProcess(t, e.bin, "check", "-o", e.config, "--path", "web/app.js", "--path", "keep/x.tmp", "--path", "build/out.txt")
	if code, _ := p.Wait(10 * time.Second); code != 0 {
		t.Fatalf("check --path: exit %d\n%s", code, p.Output())
	}
	for _, want := range []string{
		`"web/app.js": excluded by the rsync rule ` + filepath.Join(e.dir, "filter.rules") + `:8: - *`,
		`"keep/x.tmp": pushed`,
		`"build/out.txt": excluded by the rsync rule ` + filepath.Join(e.dir, "filter.rules") + `:4: - /build/`,
	} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("check --path output lacks %q:\n%s", want, p.Output())
		}
	}
}
