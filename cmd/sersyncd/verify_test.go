package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/rsync"
	"github.com/sersyncd/sersyncd/internal/status"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// verifyJSON runs `sersyncd verify --json args...` and decodes its report.
func (e *env) verifyJSON(wantCode int, args ...string) verifyReport {
	e.t.Helper()
	code, out := e.tool("verify", append([]string{"--json"}, args...)...)
	if code != wantCode {
		e.t.Fatalf("verify %q: exit %d, want %d:\n%s", args, code, wantCode, out)
	}
	var rep verifyReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("verify --json: %v\n%s", err, out)
	}
	return rep
}

// kinds maps each path a target's report names to its kind.
func kinds(t *testing.T, rep verifyReport, d *testutil.Daemon) map[string]rsync.Kind {
	t.Helper()
	for _, tr := range rep.Targets {
		if strings.HasSuffix(tr.Target, "::"+d.Module) {
			if tr.Error != "" {
				t.Fatalf("%s not checked: %s", d.Module, tr.Error)
			}
			m := map[string]rsync.Kind{}
			for _, e := range tr.Entries {
				p := e.Path
				if e.PathBytes != nil {
					p = string(e.PathBytes)
				}
				m[p] = e.Kind
			}
			return m
		}
	}
	t.Fatalf("no target %s in %+v", d.Module, rep)
	return nil
}

func sameKinds(t *testing.T, what string, got, want map[string]rsync.Kind) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: found %q, want %q", what, got, want)
	}
	for p, k := range want {
		if got[p] != k {
			t.Fatalf("%s: found %q, want %q", what, got, want)
		}
	}
}

// TestVerifyFindsAndRepairsDrift damages one of two targets behind
// sersyncd's back in every way issue 14 names; verify finds each with its
// kind (quick mode misses a block lost at the same size and mtime,
// --checksum finds it), --repair queues them through the running daemon,
// and the target is then equal byte for byte.
func TestVerifyFindsAndRepairsDrift(t *testing.T) {
	testutil.Integration(t)
	// Without sersync's -u: with it no push replaces a file that is newer
	// on the target, such as one truncated there (internal/verify's tests
	// show verify saying so).
	e := newEnv(t, envOptions{targets: 2, excludes: []string{`(.*)\.swp`}, params: "-artz"})
	e.start()
	must(t, os.MkdirAll(e.path("dir/sub"), 0o755))
	names := []string{"edited", "removed", "truncated", "zeroed", "new\nline", "-e x", "\xff\xfe bad"}
	for _, n := range names {
		e.write("dir/"+n, strings.Repeat("content of "+n+"\n", 100))
	}
	e.write("dir/sub/deep", "deep")
	e.write("dir/gone", "removed on the source")
	e.write("dir/renamed", "renamed on the source")
	e.converge(20*time.Second, "first pushes")
	// Live removals and renames change directories' mtimes on both sides.
	time.Sleep(1100 * time.Millisecond)
	must(t, os.Remove(e.path("dir/gone")))
	must(t, os.Rename(e.path("dir/renamed"), e.path("dir/moved")))
	e.converge(20*time.Second, "before the damage")
	if rep := e.verifyJSON(0, "--checksum"); !rep.Equal {
		t.Fatalf("equal trees reported as drifted: %+v", rep)
	}

	d := e.targets[0]
	on := func(rel string) string { return filepath.Join(d.Dir, rel) }
	// A restore of an older copy into the backup.
	must(t, os.WriteFile(on("dir/edited"), []byte("an old version"), 0o644))
	old := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(on("dir/edited"), old, old))
	must(t, os.Remove(on("dir/removed")))
	must(t, os.Remove(on("dir/new\nline")))
	must(t, os.Remove(on("dir/\xff\xfe bad")))
	must(t, os.Truncate(on("dir/truncated"), 10))
	// A lost block: same size, same mtime, zeros inside.
	fi, err := os.Stat(on("dir/zeroed"))
	must(t, err)
	must(t, os.Truncate(on("dir/zeroed"), 100))
	must(t, os.Truncate(on("dir/zeroed"), fi.Size()))
	must(t, os.Chtimes(on("dir/zeroed"), fi.ModTime(), fi.ModTime()))
	must(t, os.WriteFile(on("extra"), []byte("only on the target"), 0o644))
	must(t, os.MkdirAll(on("extra-dir/x"), 0o755))
	must(t, os.WriteFile(on("extra-dir/x/y"), []byte("only on the target"), 0o644))
	must(t, os.Remove(on("dir/sub/deep")))
	must(t, os.Remove(on("dir/sub")))
	// Excluded, on the target alone: the filter leaves it there.
	must(t, os.WriteFile(on("x.swp"), []byte("swap"), 0o644))

	// The damage moved dir's mtime on the target, in this second or the
	// next: put it back so the counts do not depend on when it ran.
	fi, err = os.Stat(e.path("dir"))
	must(t, err)
	must(t, os.Chtimes(on("dir"), fi.ModTime(), fi.ModTime()))
	want := map[string]rsync.Kind{
		"dir/edited": rsync.Differs, "dir/removed": rsync.Missing, "dir/truncated": rsync.Differs,
		"dir/new\nline": rsync.Missing, "dir/\xff\xfe bad": rsync.Missing,
		"extra": rsync.Extra, "extra-dir": rsync.Extra, "extra-dir/x": rsync.Extra, "extra-dir/x/y": rsync.Extra,
		"dir/sub": rsync.Missing, "dir/sub/deep": rsync.Missing,
	}
	rep := e.verifyJSON(1)
	sameKinds(t, "quick check", kinds(t, rep, d), want)
	sameKinds(t, "quick check, untouched target", kinds(t, rep, e.targets[1]), nil)
	want["dir/zeroed"] = rsync.Differs
	sameKinds(t, "--checksum", kinds(t, e.verifyJSON(1, "--checksum"), d), want)

	// The text report names each path, quoted, with its kind.
	code, out := e.tool("verify", "--checksum", "--target", "127.0.0.1::"+d.Module)
	for _, line := range []string{`missing  "dir/new\nline" (file)`, `differs  "dir/zeroed" (file: content)`,
		`extra    "extra-dir" (dir)`, `DIFFERS from the source: 5 missing, 3 differing, 4 extra`} {
		if code != 1 || !strings.Contains(out, line) {
			t.Fatalf("verify: exit %d, no %q in:\n%s", code, line, out)
		}
	}
	if strings.Contains(out, "::"+e.targets[1].Module) {
		t.Fatalf("--target checked another target:\n%s", out)
	}

	rep = e.verifyJSON(1, "--checksum", "--repair")
	var repaired targetReport
	for _, tr := range rep.Targets {
		if tr.Repaired > 0 {
			repaired = tr
		}
	}
	// Below extra-dir only extra-dir itself: its push deletes all of it.
	if repaired.Repaired != 10 || repaired.RepairedBy != "daemon" || repaired.RepairError != "" {
		t.Fatalf("repair: %+v", repaired)
	}
	e.ignore = []string{"x.swp"}
	e.converge(20*time.Second, "after verify --repair")
	if _, err := os.Stat(on("x.swp")); err != nil {
		t.Fatalf("an excluded file on the target was touched: %v", err)
	}
	if code, out := e.tool("verify", "--checksum"); code != 0 {
		t.Fatalf("verify after the repair: exit %d:\n%s", code, out)
	}
}

// TestVerifyDeleteOff: with <delete start="false"> a path only the target
// has is reported as kept, is not drift, and --repair deletes nothing.
func TestVerifyDeleteOff(t *testing.T) {
	testutil.Integration(t)
	e, kept := archiveEnv(t, envOptions{targets: 1})
	e.write("a", "a")
	e.start("-r")
	e.converge(20*time.Second, "full push")
	rep := e.verifyJSON(0)
	d := e.targets[0]
	sameKinds(t, "archive", kinds(t, rep, d), map[string]rsync.Kind{
		"archived.txt": rsync.Kept, "old": rsync.Kept, "old/dir": rsync.Kept, "old/dir/deep.txt": rsync.Kept})
	if code, out := e.tool("verify"); code != 0 || !strings.Contains(out, `extra (kept: delete is off) "old/dir/deep.txt"`) {
		t.Fatalf("verify: exit %d:\n%s", code, out)
	}

	must(t, os.Remove(filepath.Join(d.Dir, "a")))
	rep = e.verifyJSON(1, "--repair")
	sameKinds(t, "archive missing a", kinds(t, rep, d), map[string]rsync.Kind{"a": rsync.Missing,
		"archived.txt": rsync.Kept, "old": rsync.Kept, "old/dir": rsync.Kept, "old/dir/deep.txt": rsync.Kept})
	if rep.Targets[0].Repaired != 1 {
		t.Fatalf("repair: %+v", rep.Targets[0])
	}
	e.converge(20*time.Second, "after verify --repair")
	keptOnTargets(t, e, kept, "verify --repair")
}

// TestVerifyRepairWithoutDaemon queues into the queue file; the next start
// pushes it.
func TestVerifyRepairWithoutDaemon(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1})
	p := e.start()
	e.write("f", "content")
	e.converge(20*time.Second, "first push")
	must(t, p.Signal(syscall.SIGTERM))
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v", code, err)
	}
	must(t, os.Remove(filepath.Join(e.targets[0].Dir, "f")))
	code, out := e.tool("verify", "--repair")
	if code != 1 || !strings.Contains(out, "repair: queued 1 paths in "+e.db+"; no daemon runs") {
		t.Fatalf("verify --repair without a daemon: exit %d:\n%s", code, out)
	}
	e.start()
	e.converge(20*time.Second, "after the next start")
}

func TestVerifyUnreachableAndBadInput(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2})
	e.targets[1].Stop()
	code, out := e.tool("verify")
	if code != 1 || !strings.Contains(out, "::"+e.targets[1].Module+": NOT CHECKED: rsync exit") ||
		!strings.Contains(out, "::"+e.targets[0].Module+": equal to the source") {
		t.Fatalf("a stopped target: exit %d:\n%s", code, out)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--fast"}, "flag provided but not defined: -fast"},
		{"unknown target", []string{"--target", "nowhere::x"}, `--target "nowhere::x": ` + e.config + " has no such target"},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := e.tool("verify", tc.args...)
			if code != 2 || !strings.Contains(out, tc.want) || strings.Count(strings.TrimSpace(out), "\n") > 0 {
				t.Fatalf("exit %d, want 2 and one line with %q:\n%s", code, tc.want, out)
			}
		})
	}
	e.editConfig(`<sersyncd settle="20ms"`, `<sersyncd verify="soon" settle="20ms"`)
	if code, out := e.tool("verify"); code != 2 || !strings.Contains(out, `<sersyncd verify="soon">: must be a duration`) {
		t.Fatalf("bad config: exit %d:\n%s", code, out)
	}
}

// TestScheduledVerify: the daemon's own verify shows drift in status and
// metrics; turned to repair by a reload, it ends the drift by itself.
func TestScheduledVerify(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 1, verifyEvery: "1s"})
	addr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	p := e.start("--metrics", addr)
	e.write("f", "content")
	e.converge(20*time.Second, "first push")
	d := e.targets[0]
	started := time.Now()
	waitVerify := func(what string, ok func(*status.Verify) bool) *status.Verify {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			v := targetStatus(t, e.status(), d.Module).Verify
			if v != nil && v.Time.After(started) && ok(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: last verify %+v\n%s", what, v, tail(p.Output(), 3000))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitVerify("equal", func(v *status.Verify) bool { return v.Error == "" && v.Drift == 0 })

	must(t, os.Remove(filepath.Join(d.Dir, "f")))
	started = time.Now()
	v := waitVerify("drift", func(v *status.Verify) bool { return v.Drift == 1 })
	if v.Missing != 1 || v.Repaired != 0 || v.LastSuccess.IsZero() {
		t.Fatalf("status: %+v", v)
	}
	if code, out := e.tool("status"); code != 0 || !strings.Contains(out, "DIFFERS: 1 paths (1 missing, 0 differing, 0 extra)") {
		t.Fatalf("status: exit %d:\n%s", code, out)
	}
	_, body := httpGet(t, "http://"+addr+"/metrics")
	if got := metricValue(t, body, "sersyncd_verify_drift_paths", `target="127.0.0.1::`+d.Module+`"`); got != 1 {
		t.Fatalf("sersyncd_verify_drift_paths = %v:\n%s", got, body)
	}
	if got := metricValue(t, body, "sersyncd_verify_last_success_timestamp_seconds"); got < float64(started.Unix()) {
		t.Fatalf("sersyncd_verify_last_success_timestamp_seconds = %v, before %d", got, started.Unix())
	}
	if !strings.Contains(p.Output(), `verify: the target differs from the source: 1 missing, 0 differing, 0 extra, e.g. missing \"f\"`) {
		t.Fatalf("no log line:\n%s", tail(p.Output(), 3000))
	}
	// Only the scheduled verify would put it back: no change was made.
	if _, err := os.Stat(filepath.Join(d.Dir, "f")); err == nil {
		t.Fatal("repaired without verifyRepair")
	}

	e.editConfig(`verify="1s"`, `verify="1s" verifyRepair="true"`)
	must(t, p.Signal(syscall.SIGHUP))
	if !p.WaitOutput("config reloaded", 10*time.Second) {
		t.Fatalf("no reload:\n%s", p.Output())
	}
	e.converge(20*time.Second, "after the scheduled repair")
	started = time.Now()
	waitVerify("equal after the repair", func(v *status.Verify) bool { return v.Error == "" && v.Drift == 0 })
	_, body = httpGet(t, "http://"+addr+"/metrics")
	if got := metricValue(t, body, "sersyncd_verify_drift_paths"); got != 0 {
		t.Fatalf("sersyncd_verify_drift_paths after the repair = %v", got)
	}
}

// TestVerifyOverSSH: an ssh target is compared and repaired the same way.
func TestVerifyOverSSH(t *testing.T) {
	testutil.Integration(t)
	sshd := testutil.StartSSHD(t)
	e := newEnv(t, envOptions{ssh: sshd})
	e.start()
	e.write("f", "over ssh")
	e.write("-e g", "a name like an option")
	e.converge(20*time.Second, "first push")
	d := e.targets[0]
	must(t, os.Remove(filepath.Join(d.Dir, "-e g")))
	must(t, os.WriteFile(filepath.Join(d.Dir, "extra"), []byte("x"), 0o644))
	rep := e.verifyJSON(1, "--repair")
	if len(rep.Targets) != 1 || rep.Targets[0].Error != "" {
		t.Fatalf("verify over ssh: %+v", rep)
	}
	got := map[string]rsync.Kind{}
	for _, en := range rep.Targets[0].Entries {
		got[en.Path] = en.Kind
	}
	sameKinds(t, "over ssh", got, map[string]rsync.Kind{"-e g": rsync.Missing, "extra": rsync.Extra})
	e.converge(20*time.Second, "after verify --repair over ssh")
}
