package verify

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/rsync"

	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// hostile are names rsync escapes or a careless parser splits.
var hostile = []string{
	"with space", "new\nline", "-e sh", "--delete", "star*[x]", ";semi", "#hash", `back\#123slash`,
	"tab\there", "\xff\xfe invalid utf8", "trailing space ", "*deleting   x",
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// found maps each path of r to its kind.
func found(r *Result) map[string]rsync.Kind {
	m := map[string]rsync.Kind{}
	for _, e := range r.Entries {
		m[e.Path] = e.Kind
	}
	return m
}

func setup(t *testing.T, excludes []string, keep bool) (src string, d *testutil.Daemon, tgt *rsync.Target) {
	t.Helper()
	d = testutil.StartDaemon(t, testutil.DaemonOptions{})
	src = t.TempDir()
	flt, err := filter.New(excludes)
	if err != nil {
		t.Fatal(err)
	}
	tgt = rsync.New(rsync.Options{Source: src, Dest: "127.0.0.1::" + d.Module, Port: d.Port, Params: []string{"-artuz"},
		Timeout: 20 * time.Second, Filter: flt, KeepDeleted: keep})
	return src, d, tgt
}

// TestTargetFindsEveryKind runs the real rsync against a real daemon: an
// equal target is equal (hostile names and all), then each kind of drift is
// found with the exact raw name.
func TestTargetFindsEveryKind(t *testing.T) {
	src, d, tgt := setup(t, []string{`(.*)\.swp`, `^cache/*`}, false)
	for _, n := range hostile {
		write(t, filepath.Join(src, "dir", n), "name: "+n)
	}
	write(t, filepath.Join(src, "x.swp"), "excluded")
	write(t, filepath.Join(src, "cache/f"), "excluded")
	if err := os.Symlink("dir", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tgt.FullPush(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r := Target(ctx, tgt, Options{})
	if !r.Equal() {
		t.Fatalf("after a full push: %+v", r)
	}

	// Drift of every kind, on the target behind the pusher's back.
	must(t, os.Remove(filepath.Join(d.Dir, "dir", "new\nline")))
	write(t, filepath.Join(d.Dir, "dir", "-e sh"), "edited on the target, longer")
	// Older than the source's, as a restore would leave it: a newer one is
	// kept by the -u of -artuz (tested below), and the second the write
	// falls in must not decide.
	restoredAt := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(filepath.Join(d.Dir, "dir", "-e sh"), restoredAt, restoredAt))
	write(t, filepath.Join(d.Dir, "\xff extra"), "only on the target")
	write(t, filepath.Join(d.Dir, "xd/y/z"), "an extra tree")
	write(t, filepath.Join(d.Dir, "y.swp"), "excluded, only on the target: left alone")
	write(t, filepath.Join(d.Dir, "cache/g"), "below an excluded directory")
	must(t, os.Remove(filepath.Join(d.Dir, "link")))
	must(t, os.Symlink("elsewhere", filepath.Join(d.Dir, "link")))
	// Same size, same mtime, other content: only --checksum sees it.
	fi, err := os.Stat(filepath.Join(src, "dir", "with space"))
	must(t, err)
	write(t, filepath.Join(d.Dir, "dir", "with space"), strings.ToUpper("name: with space"))
	must(t, os.Chtimes(filepath.Join(d.Dir, "dir", "with space"), fi.ModTime(), fi.ModTime()))

	// The damage moved dir's mtime on the target, in this second or the
	// next: put it back so the test does not depend on when it ran.
	sameTime(t, filepath.Join(src, "dir"), filepath.Join(d.Dir, "dir"))
	want := map[string]rsync.Kind{
		"dir/new\nline": rsync.Missing, "dir/-e sh": rsync.Differs, "\xff extra": rsync.Extra,
		"xd": rsync.Extra, "xd/y": rsync.Extra, "xd/y/z": rsync.Extra, "link": rsync.Differs,
	}
	r = Target(ctx, tgt, Options{})
	if got := found(r); r.Error != "" || !mapsEqual(got, want) {
		t.Fatalf("quick check: found %q (error %q), want %q", got, r.Error, want)
	}
	if r.Missing != 1 || r.Differing != 2 || r.Extra != 4 || r.Drift() != 7 {
		t.Fatalf("counts: %+v", r)
	}
	want["dir/with space"] = rsync.Differs
	r = Target(ctx, tgt, Options{Checksum: true, LowPriority: true})
	if got := found(r); r.Error != "" || !mapsEqual(got, want) {
		t.Fatalf("--checksum: found %q (error %q), want %q", got, r.Error, want)
	}
	if paths := r.RepairPaths(); !slices.Equal(paths, []string{"dir/-e sh", "dir/new\nline", "dir/with space", "link", "xd", "\xff extra"}) {
		t.Fatalf("repair paths %q", paths)
	}

	// A push of the repair paths, as the daemon makes it, ends the drift.
	if err := tgt.Push(ctx, change.Of(r.RepairPaths())); err != nil {
		t.Fatal(err)
	}
	if r := Target(ctx, tgt, Options{Checksum: true}); !r.Equal() {
		t.Fatalf("after pushing the repair paths: %+v", r)
	}
	for _, p := range []string{"y.swp", "cache/g"} {
		if _, err := os.Stat(filepath.Join(d.Dir, p)); err != nil {
			t.Fatalf("excluded %s was not left alone: %v", p, err)
		}
	}

	// Edited on the target an hour "later": -u in the options makes every
	// push skip it, but it is drift all the same, and the note says why a
	// repair cannot fix it.
	edited := filepath.Join(d.Dir, "dir", "#hash")
	write(t, edited, "edited later")
	later := time.Now().Add(time.Hour)
	must(t, os.Chtimes(edited, later, later))
	// One edited an hour "earlier" beside it: a push replaces that one.
	restored := filepath.Join(d.Dir, "dir", ";semi")
	write(t, restored, "restored from an old copy")
	earlier := time.Now().Add(-time.Hour)
	must(t, os.Chtimes(restored, earlier, earlier))
	sameTime(t, filepath.Join(src, "dir"), filepath.Join(d.Dir, "dir"))
	r = Target(ctx, tgt, Options{})
	if found(r)["dir/#hash"] != rsync.Differs || found(r)["dir/;semi"] != rsync.Differs || len(r.Notes) != 1 ||
		!strings.Contains(r.Notes[0], "1 differing paths are newer on the target: with -u (--update)") {
		t.Fatalf("a file newer on the target: %+v", r)
	}
	for _, e := range r.Entries {
		if e.NewerKept != (e.Path == "dir/#hash") {
			t.Fatalf("NewerKept wrong: %+v", e)
		}
	}
	if paths := r.RepairPaths(); !slices.Equal(paths, []string{"dir/;semi"}) {
		t.Fatalf("repair paths %q", paths)
	}
	// Pushed all the same, the newer one stays: the note is right.
	must(t, tgt.Push(ctx, change.Of([]string{"dir/#hash", "dir/;semi"})))
	if r := Target(ctx, tgt, Options{}); !mapsEqual(found(r), map[string]rsync.Kind{"dir/#hash": rsync.Differs}) {
		t.Fatalf("after a push: %+v", r)
	}
}

func TestTargetDeleteOffKeepsExtra(t *testing.T) {
	src, d, tgt := setup(t, nil, true)
	write(t, filepath.Join(src, "a"), "a")
	ctx := context.Background()
	must(t, tgt.FullPush(ctx, nil))
	write(t, filepath.Join(d.Dir, "archived"), "the source deleted it long ago")
	r := Target(ctx, tgt, Options{})
	if !r.Equal() || r.Kept != 1 || found(r)["archived"] != rsync.Kept || len(r.RepairPaths()) != 0 {
		t.Fatalf("delete off: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "archived")); err != nil {
		t.Fatalf("a dry run deleted a kept file: %v", err)
	}
}

func TestTargetUnreachable(t *testing.T) {
	_, d, tgt := setup(t, nil, false)
	d.Stop()
	r := Target(context.Background(), tgt, Options{})
	if r.Error == "" || r.Equal() || !strings.Contains(r.Error, "rsync exit") {
		t.Fatalf("a stopped daemon: %+v", r)
	}
}

// sameTime gives dst the mtime of src.
func sameTime(t *testing.T, src, dst string) {
	t.Helper()
	fi, err := os.Stat(src)
	must(t, err)
	must(t, os.Chtimes(dst, fi.ModTime(), fi.ModTime()))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[string]rsync.Kind) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestLowPriority: a scheduled verify's rsync runs at nice 19 in the idle
// I/O class, from its start (a wrapper in front of rsync reports both).
func TestLowPriority(t *testing.T) {
	src, _, tgt := setup(t, nil, false)
	write(t, filepath.Join(src, "a"), "a")
	dir := t.TempDir()
	out := filepath.Join(dir, "priority")
	wrapper := filepath.Join(dir, "rsync")
	must(t, os.WriteFile(wrapper, []byte("#!/bin/sh\necho \"$(ionice -p $$) $(nice)\" > "+out+"\nexec rsync \"$@\"\n"), 0o755))
	opt := tgt.Options()
	opt.Binary = wrapper
	tgt = rsync.New(opt)
	r := Target(context.Background(), tgt, Options{LowPriority: true})
	b, err := os.ReadFile(out)
	must(t, err)
	if got := strings.TrimSpace(string(b)); got != "idle 19" || r.Error != "" || r.Missing != 1 {
		t.Errorf("priority %q, want \"idle 19\"; result %+v", got, r)
	}
}
