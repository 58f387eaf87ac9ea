package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
	"github.com/sersyncd/sersyncd/internal/testutil/confxml"
)

// env is one replication set-up: a source tree, K real rsync daemons on
// distinct loopback addresses sharing one port (sersync's config has one
// port for all remotes), and a confxml.xml naming them.
type env struct {
	t       *testing.T
	bin     string
	src     string
	dir     string
	db      string
	config  string
	targets []*testutil.Daemon
	proc    *testutil.Process
	ignore  []string // path prefixes the comparison skips: excluded on purpose
}

type envOptions struct {
	targets    int
	settle     string // sersyncd's settle; default 20ms
	excludes   []string
	attrib     bool
	backoffMax string
	params     string
	// failLogEvery sets the failure replay interval (sersyncd's interval attribute).
	failLogEvery string
	// crontabEvery turns the crontab full push on at that interval.
	crontabEvery    string
	crontabExcludes []string
	// authUser and passwordFile turn rsync daemon auth on.
	authUser, passwordFile string
	secrets                map[string]string // the daemons' users and passwords
	timeout                int               // rsync --timeout seconds; default 20
	ssh                    *testutil.SSHD    // set: one target, a plain directory reached over this sshd
	// commandPrefix turns sersync's command plugin on with this prefix.
	commandPrefix string
	// keepDeleted is <delete start="false">: archive targets.
	keepDeleted bool
	// rules turns <rsyncFilter> on with these lines as the rules file.
	rules []string
	// rsyncBinary sets <sersyncd rsync>.
	rsyncBinary string
	// verifyEvery turns the scheduled verify on (<sersyncd verify>).
	verifyEvery string
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	testutil.RequireRsync(t)
	if o.targets == 0 {
		o.targets = 1
	}
	if o.backoffMax == "" {
		o.backoffMax = "1s"
	}
	if o.params == "" {
		o.params = "-artuz"
	}
	if o.timeout == 0 {
		o.timeout = 20
	}
	e := &env{t: t, bin: testutil.BuildBinary(t), dir: t.TempDir()}
	e.src = filepath.Join(e.dir, "src")
	e.db = filepath.Join(e.dir, "queue.db")
	if err := os.Mkdir(e.src, 0o755); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	var remotes []confxml.Remote
	sshCommand := ""
	if o.ssh != nil {
		// One target: a plain directory, reached as 127.0.0.1:/abs/dir.
		o.targets, port, sshCommand = 0, o.ssh.Port, o.ssh.Command
		// Alone in its parent, so a test can see that nothing escapes it.
		dir := filepath.Join(t.TempDir(), "ssh-target")
		must(t, os.Mkdir(dir, 0o755))
		e.targets = append(e.targets, &testutil.Daemon{Module: "ssh:" + dir, Dir: dir})
		remotes = append(remotes, confxml.Remote{IP: "127.0.0.1", Module: dir})
	}
	for i := 0; i < o.targets; i++ {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		d := testutil.StartDaemon(t, testutil.DaemonOptions{Module: fmt.Sprintf("backup%d", i), Address: ip, Port: port, Secrets: o.secrets})
		e.targets = append(e.targets, d)
		remotes = append(remotes, confxml.Remote{IP: ip, Module: d.Module})
	}
	rulesFile := ""
	if o.rules != nil {
		rulesFile = filepath.Join(e.dir, "filter.rules")
		must(t, os.WriteFile(rulesFile, []byte(strings.Join(o.rules, "\n")+"\n"), 0o644))
	}
	e.config = filepath.Join(e.dir, "confxml.xml")
	err := confxml.Write(e.config, confxml.Conf{
		Src: e.src, Dir: e.dir, Port: port, Targets: remotes, Excludes: o.excludes,
		Attrib: o.attrib, Settle: cmp.Or(o.settle, "20ms"), BackoffMax: o.backoffMax, Params: o.params,
		FailLogEvery: o.failLogEvery, CrontabEvery: o.crontabEvery, CrontabExcludes: o.crontabExcludes,
		AuthUser: o.authUser, PasswordFile: o.passwordFile, CommandPrefix: o.commandPrefix,
		Timeout: o.timeout, SSH: sshCommand, KeepDeleted: o.keepDeleted, RulesFile: rulesFile, Rsync: o.rsyncBinary, VerifyEvery: o.verifyEvery,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs the built binary in the foreground and waits until it watches.
func (e *env) start(args ...string) *testutil.Process {
	e.t.Helper()
	argv := append([]string{"-o", e.config, "--db", e.db}, args...)
	e.proc = testutil.StartProcess(e.t, e.bin, argv...)
	if !e.proc.WaitOutput("sersyncd started", 10*time.Second) {
		e.t.Fatalf("sersyncd did not start:\n%s", e.proc.Output())
	}
	return e.proc
}

// converge waits until every target equals the source, byte for byte,
// except for the paths in e.ignore (excluded on purpose).
func (e *env) converge(timeout time.Duration, what string) {
	e.t.Helper()
	for i, d := range e.targets {
		deadline := time.Now().Add(timeout)
		for {
			diff := e.relevant(testutil.DiffTrees(e.src, d.Dir))
			if len(diff) == 0 {
				break
			}
			if time.Now().After(deadline) {
				out := ""
				if e.proc != nil {
					out = e.proc.Output()
				}
				e.t.Fatalf("%s: target %d (%s) differs from the source:\n%s\n--- sersyncd output:\n%s",
					what, i, d.Module, strings.Join(diff, "\n"), tail(out, 4000))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (e *env) relevant(diff []string) []string {
	var out []string
next:
	for _, line := range diff {
		for _, p := range e.ignore {
			if strings.HasPrefix(line, `"`+p) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (e *env) path(rel string) string { return filepath.Join(e.src, rel) }

func (e *env) write(rel, content string) {
	e.t.Helper()
	if err := os.WriteFile(e.path(rel), []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplicatesEveryKindOfChange runs the operations an operator's tree
// sees, one group at a time, and checks all three targets after each.
func TestReplicatesEveryKindOfChange(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 3, attrib: true, excludes: []string{`(.*)\.swp$`, `^cache/*`}})
	e.start()
	long := strings.Repeat("x", 255)
	steps := []struct {
		name string
		do   func()
	}{
		{"create", func() { e.write("a.txt", "hello\n") }},
		{"append", func() {
			f, err := os.OpenFile(e.path("a.txt"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteString("more\n")
			must(t, err)
			must(t, f.Close())
		}},
		{"overwrite", func() { e.write("a.txt", "replaced entirely\n") }},
		{"truncate", func() { must(t, os.Truncate(e.path("a.txt"), 3)) }},
		{"same size rewrite within the same second", func() {
			// rsync's quick check sees equal size and mtime and would skip it.
			e.write("same.txt", "AAAA")
			mtime := time.Now().Truncate(time.Second)
			must(t, os.Chtimes(e.path("same.txt"), mtime, mtime))
			e.converge(10*time.Second, "first version")
			e.write("same.txt", "BBBB")
			must(t, os.Chtimes(e.path("same.txt"), mtime, mtime))
		}},
		{"chmod", func() { must(t, os.Chmod(e.path("a.txt"), 0o600)) }},
		{"delete", func() { must(t, os.Remove(e.path("a.txt"))) }},
		{"mkdir -p with files", func() {
			must(t, os.MkdirAll(e.path("d1/d2/d3"), 0o755))
			e.write("d1/d2/d3/f", "deep")
			e.write("d1/top", "top")
		}},
		{"rename file", func() { must(t, os.Rename(e.path("d1/top"), e.path("d1/top2"))) }},
		{"rename directory", func() { must(t, os.Rename(e.path("d1"), e.path("moved"))) }},
		{"change inside renamed directory", func() { e.write("moved/d2/d3/f", "changed after the move") }},
		{"delete non-empty directory", func() { must(t, os.RemoveAll(e.path("moved"))) }},
		{"symlinks", func() {
			must(t, os.Symlink("/etc/hostname", e.path("abs-link")))
			must(t, os.Symlink("same.txt", e.path("rel-link")))
			must(t, os.Symlink("nowhere", e.path("dangling")))
		}},
		{"hostile names", func() {
			for _, name := range []string{
				"with space", "new\nline", "-e sh", "--delete", "star*", ";semi", "#hash", `"quoted'`, `back\slash`,
				"\xff\xfe invalid utf8", "$(touch pwned)", "semi;colon", long,
			} {
				e.write(name, "name: "+name)
			}
		}},
		{"excluded paths stay local", func() {
			e.ignore = []string{"x.swp", "cache", "fresh/y.swp"}
			e.write("x.swp", "swap")
			must(t, os.MkdirAll(e.path("cache/sub"), 0o755))
			e.write("cache/sub/f", "cached")
			// A new directory is pushed as a listed path: with the -r of
			// "-artuz" rsync would copy its excluded file too.
			must(t, os.Mkdir(e.path("fresh"), 0o755))
			e.write("fresh/y.swp", "swap in a new directory")
			e.write("fresh/keep", "kept")
		}},
	}
	for _, s := range steps {
		s.do()
		e.converge(10*time.Second, s.name)
		assertExcludedAbsent(t, e)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "pwned")); err == nil {
		t.Fatal("a file name was executed")
	}
}

// assertExcludedAbsent checks the filter: the source has the excluded paths
// (removed before comparing) and no target does.
func assertExcludedAbsent(t *testing.T, e *env) {
	t.Helper()
	for _, d := range e.targets {
		for _, p := range []string{"x.swp", "cache", "fresh/y.swp"} {
			if _, err := os.Lstat(filepath.Join(d.Dir, p)); err == nil {
				t.Fatalf("excluded %s reached target %s", p, d.Module)
			}
		}
	}
}

func TestBurstOf5000Files(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 3})
	e.start()
	for i := 0; i < 5000; i++ {
		dir := fmt.Sprintf("dir%02d", i%50)
		if i < 50 {
			must(t, os.Mkdir(e.path(dir), 0o755))
		}
		e.write(fmt.Sprintf("%s/file%04d", dir, i), fmt.Sprintf("content %d\n", i))
	}
	e.converge(60*time.Second, "5000 files")
}

func TestTargetDownConvergesWhenBack(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 3, backoffMax: "500ms"})
	e.start()
	down := e.targets[2]
	down.Stop()
	must(t, os.MkdirAll(e.path("a/b"), 0o755))
	for i := 0; i < 200; i++ {
		e.write(fmt.Sprintf("a/b/f%d", i), strings.Repeat("x", i))
	}
	e.write("gone", "soon deleted")
	for _, d := range e.targets[:2] {
		testutil.WaitConverged(t, e.src, d.Dir, 20*time.Second, "live target", d.Module)
	}
	must(t, os.Remove(e.path("gone")))
	for _, d := range e.targets[:2] {
		testutil.WaitConverged(t, e.src, d.Dir, 20*time.Second, "live target after delete", d.Module)
	}
	if diff := testutil.DiffTrees(e.src, down.Dir); len(diff) == 0 {
		t.Fatal("the stopped target equals the source: the test proves nothing")
	}
	if !strings.Contains(e.proc.Output(), "push failed") {
		t.Fatalf("no failure logged for the stopped target:\n%s", e.proc.Output())
	}
	down.Start()
	e.converge(20*time.Second, "after the target came back")
}

// TestKill9DuringBurst kills the daemon mid-burst: the committed records and
// the unclean-stop full push together must bring every change across.
func TestKill9DuringBurst(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2})
	p := e.start()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 3000; i++ {
			dir := e.path(fmt.Sprintf("k%02d", i%30))
			_ = os.MkdirAll(dir, 0o755)
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte(fmt.Sprint(i)), 0o644)
			if i%500 == 499 {
				_ = os.RemoveAll(e.path(fmt.Sprintf("k%02d", (i/500)%30)))
			}
		}
	}()
	time.Sleep(150 * time.Millisecond)
	must(t, p.Signal(syscall.SIGKILL))
	if _, err := p.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-done
	e.start()
	e.converge(60*time.Second, "after kill -9 and restart")
	if !strings.Contains(e.proc.Output(), "did not stop cleanly") {
		t.Fatalf("the unclean stop was not detected:\n%s", e.proc.Output())
	}
}

func TestFullPushAtStartWithExcludes(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2, excludes: []string{`(.*)\.swp$`, `^cache/*`}})
	must(t, os.MkdirAll(e.path("old/dir"), 0o755))
	e.write("old/dir/f", "existing before start")
	e.write("star*[x]", "wildcard name")
	e.write("x.swp", "excluded")
	must(t, os.MkdirAll(e.path("cache"), 0o755))
	e.write("cache/f", "excluded dir")
	// A stale file on a target must go.
	must(t, os.WriteFile(filepath.Join(e.targets[0].Dir, "stale"), []byte("x"), 0o644))
	e.start("-r")
	for _, d := range e.targets {
		testutil.WaitConverged(t, filepath.Join(e.src, "old"), filepath.Join(d.Dir, "old"), 20*time.Second)
	}
	// Compare without the excluded paths.
	must(t, os.Remove(e.path("x.swp")))
	must(t, os.RemoveAll(e.path("cache")))
	e.converge(20*time.Second, "full push")
}

func TestSIGTERMKeepsQueueAndExitsZero(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1})
	p := e.start()
	e.write("f", "x")
	e.converge(10*time.Second, "before stop")
	must(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, p.Output())
	}
	// The next start is clean: no full push.
	e.start()
	if strings.Contains(e.proc.Output(), "did not stop cleanly") {
		t.Fatalf("a clean stop was taken for a crash:\n%s", e.proc.Output())
	}
	// Changes while stopped are not seen (no watch), but changes after are.
	e.write("g", "after restart")
	e.converge(10*time.Second, "after restart")
}

// TestSIGTERMDuringBurst stops the daemon while a burst is being pushed:
// what was seen is committed, the next start pushes the rest, and no file
// whose push was acknowledged is pushed again.
func TestSIGTERMDuringBurst(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2})
	// Directories made beforehand: a new directory's files are seen both by
	// its scan and by their own events, and may rightly be pushed twice.
	for d := 0; d < 30; d++ {
		must(t, os.Mkdir(e.path(fmt.Sprintf("s%02d", d)), 0o755))
	}
	p := e.start("-r")
	e.converge(10*time.Second, "the empty directories")
	// Each file is written outside the tree and renamed in: one event per
	// file, so any second push of one would be a second push of the same
	// change, not of a write that came after its first push.
	staging := filepath.Join(e.dir, "staging")
	must(t, os.Mkdir(staging, 0o755))
	for i := 0; i < 3000; i++ {
		tmp := filepath.Join(staging, "f")
		must(t, os.WriteFile(tmp, []byte(fmt.Sprint(i)), 0o644))
		must(t, os.Rename(tmp, e.path(fmt.Sprintf("s%02d/f%04d", i/100, i))))
	}
	// At once: events may still wait in the kernel, pushes are going on.
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v:\n%s", code, err, p.Output())
	}
	before := make([]map[string]int, len(e.targets))
	for i, d := range e.targets {
		before[i] = d.Received()
	}
	e.start()
	e.converge(60*time.Second, "after SIGTERM during a burst and a restart")
	if strings.Contains(e.proc.Output(), "did not stop cleanly") {
		t.Fatalf("a SIGTERM was taken for a crash:\n%s", e.proc.Output())
	}
	// Files pushed (and so acknowledged) before the stop are not pushed
	// again by the next run.
	for i, d := range e.targets {
		after := d.Received()
		for path, n := range before[i] {
			if after[path] != n {
				t.Errorf("%s: %s pushed again after the restart (%d times before, %d after)", d.Module, path, n, after[path])
			}
		}
	}
	t.Logf("%d of 3000 files had arrived before the stop", len(before[0]))
}
