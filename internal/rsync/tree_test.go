package rsync

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// The argv of a tree push: the directories as absolute arguments after
// "--", recursive and relative, deletions as the target allows, the filter
// on stdin the way a full push reads it.
func TestTreePushArgs(t *testing.T) {
	withRules, withExprs := rulesFilter(t, "- *.tmp\n"), exprFilter(t, `(.*)\.tmp`)
	dirs := []string{"new", "-rf", "a\nb", ";c", "d/e"}
	cases := []struct {
		name   string
		opt    Options
		want   []string // options it must carry
		absent []string // options it must not carry
		args   []string // after "--"
	}{
		{
			name:   "daemon",
			opt:    Options{Source: "/data", Dest: "h::m"},
			want:   []string{"--recursive", "--relative", "--ignore-times", "--delete-missing-args", "--delete", "--force", "--from0", "--exclude-from=-", "--links"},
			absent: []string{"--files-from", "--no-recursive", "--ignore-missing-args"},
			args:   []string{"/data/./new", "/data/./-rf", "/data/./a\nb", "/data/./;c", "/data/./d/e", "h::m/"},
		},
		{
			name:   "keeps deleted files: nothing deleted, nothing forced",
			opt:    Options{Source: "/data/", Dest: "h::m", KeepDeleted: true},
			want:   []string{"--recursive", "--relative", "--ignore-missing-args"},
			absent: []string{"--delete", "--delete-missing-args", "--force"},
			args:   []string{"/data/./new", "/data/./-rf", "/data/./a\nb", "/data/./;c", "/data/./d/e", "h::m/"},
		},
		{
			name:   "rsync rules: merged from stdin",
			opt:    Options{Source: "/data", Dest: "u@h:/b", SSHCommand: "ssh", Filter: withRules},
			want:   []string{"--filter=merge -", "--rsh=ssh"},
			absent: []string{"--exclude-from"},
			args:   []string{"/data/./new", "/data/./-rf", "/data/./a\nb", "/data/./;c", "/data/./d/e", "u@h:/b/"},
		},
		{
			name:   "sersync expressions: anchored excludes from stdin",
			opt:    Options{Source: "/data", Dest: "h::m", Filter: withExprs},
			want:   []string{"--exclude-from=-"},
			absent: []string{"--filter"},
			args:   []string{"/data/./new", "/data/./-rf", "/data/./a\nb", "/data/./;c", "/data/./d/e", "h::m/"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := New(tc.opt).TreePushArgs(dirs)
			opts := options(t, args)
			for _, w := range tc.want {
				if !containsString(opts, w) {
					t.Errorf("lacks %q: %q", w, args)
				}
			}
			for _, n := range tc.absent {
				if hasOption(opts, n) {
					t.Errorf("has %s: %q", n, args)
				}
			}
			if got := args[len(opts)+1:]; !reflect.DeepEqual(got, tc.args) {
				t.Errorf("arguments %q, want %q", got, tc.args)
			}
		})
	}
}

func TestArgChunks(t *testing.T) {
	cases := []struct {
		name  string
		dirs  []string
		limit int
		want  [][]string
	}{
		{"all in one", []string{"a", "b", "c"}, 100, [][]string{{"a", "b", "c"}}},
		{"split at the limit", []string{"aaa", "bbb", "ccc"}, 2 * (10 + 3 + 1), [][]string{{"aaa", "bbb"}, {"ccc"}}},
		{"one longer than the limit goes alone", []string{"a", strings.Repeat("x", 50), "b"}, 30, [][]string{{"a"}, {strings.Repeat("x", 50)}, {"b"}}},
		{"none", nil, 10, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := argChunks(10, tc.dirs, tc.limit); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("argChunks = %q, want %q", got, tc.want)
			}
		})
	}
}

// What a batch of changes becomes: trees not below another tree, and the
// plain paths no tree covers.
func TestSplitChanges(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "new/sub/f", "f")
	mkfile(t, src, "file", "now a file")
	tgt := New(Options{Source: src})
	trees, paths := tgt.split([]change.Change{
		{Path: "new/sub", Tree: true}, {Path: "new", Tree: true}, {Path: "new/sub/f"}, {Path: "new"},
		{Path: "newer"}, {Path: "file/t", Tree: true}, {Path: "other/x"},
	})
	if want := []string{"new"}; !reflect.DeepEqual(trees, want) {
		t.Errorf("trees %q, want %q", trees, want)
	}
	// "other" is missing on the source: its removal is what is pushed.
	if want := []string{"newer", "file", "other"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %q, want %q", paths, want)
	}
}

// TestListTrees: the trees of a batch are listed path by path only when
// every one is fresh and they hold treeListMax entries or fewer in all;
// what the filter excludes is not listed, and a tree gone is listed
// itself, so that the push deletes what a failed one left.
func TestListTrees(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "a/f", "f")
	mkfile(t, src, "a/sub/g", "g")
	mkfile(t, src, "a/skip.tmp", "excluded")
	for i := range treeListMax {
		mkfile(t, src, fmt.Sprintf("big/%03d", i), "")
	}
	mkfile(t, src, "b/h", "h")
	deepDir(t, filepath.Join(src, "deep"))
	tgt := New(Options{Source: src, Filter: exprFilter(t, `(.*)\.tmp`)})
	fresh := func(p string) change.Change { return change.Change{Path: p, Tree: true, Fresh: true} }
	cases := []struct {
		name    string
		changes []change.Change
		want    []string // nil: not listed
	}{
		{"fresh and small", []change.Change{fresh("a"), {Path: "x"}}, []string{"a", "a/f", "a/sub", "a/sub/g"}},
		{"two fresh trees", []change.Change{fresh("a"), fresh("b")}, []string{"a", "a/f", "a/sub", "a/sub/g", "b", "b/h"}},
		{"gone", []change.Change{fresh("gone")}, []string{"gone"}},
		{"not fresh", []change.Change{{Path: "a", Tree: true}}, nil},
		{"one not fresh beside a fresh one", []change.Change{fresh("a"), {Path: "b", Tree: true}}, nil},
		{"exactly the most", []change.Change{fresh("big")}, append([]string{"big"}, numberedPaths("big/%03d", treeListMax)...)},
		{"more than the most in all", []change.Change{fresh("big"), fresh("b")}, nil},
		// Listed, it would go without what it holds, and succeed.
		{"something below it cannot be read", []change.Change{fresh("deep")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			trees, _ := tgt.split(tc.changes)
			got, ok := tgt.listTrees(context.Background(), trees, tc.changes)
			if ok != (tc.want != nil) || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("listTrees = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// exprFilter is a filter of sersync's expressions.
func exprFilter(t *testing.T, exprs ...string) *filter.Filter {
	t.Helper()
	f, err := filter.New(exprs)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// rulesFilter is a filter of rsync-style rules, as <rsyncFilter> gives.
func rulesFilter(t *testing.T, rules string) *filter.Filter {
	t.Helper()
	rs, err := filter.ParseRules("rules", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.NewWithRules(nil, rs)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// deepDir makes dir and directories below it deeper than PATH_MAX (4096
// bytes), which no call given a path can read, as root or not.
func deepDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("n", 250)
	for range 20 { // 20 × 251 bytes
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

func numberedPaths(format string, n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf(format, i)
	}
	return ps
}

// treeCase is a source pushed whole first, a change to it, and the
// changes queued for it.
type treeCase struct {
	name        string
	filter      func(t *testing.T) *filter.Filter
	keepDeleted bool
	before      func(t *testing.T, src string)
	change      func(t *testing.T, src string)
	changes     []change.Change
	// excluded: paths the target must not have (filtered out); kept:
	// paths the target must still have although the source has not.
	excluded, kept []string
	// listable: the target has nothing below the trees that the source
	// has not, as the watcher knows a fresh tree: the case runs a second
	// time with every tree Fresh, listed in the list push.
	listable bool
}

func treeCases() []treeCase {
	exprs := func(t *testing.T) *filter.Filter { return exprFilter(t, `(.*)\.tmp`, `^new/cache`) }
	rules := func(t *testing.T) *filter.Filter { return rulesFilter(t, "- *.tmp\n- /new/cache/\n") }
	old := func(t *testing.T, src string) { mkfile(t, src, "old/f", "old") }
	newTree := func(t *testing.T, src string) {
		for _, f := range []string{"new/a", "new/sub/b", "new/sub/deeper/c", "new/-rf", "new/x\ny", "new/;semi", "new/#hash", "new/sp ace"} {
			mkfile(t, src, f, "content of "+f)
		}
		symlink(t, "a", src, "new/link")
	}
	withExcluded := func(t *testing.T, src string) {
		newTree(t, src)
		mkfile(t, src, "new/x.tmp", "excluded")
		mkfile(t, src, "new/sub/y.tmp", "excluded")
		mkfile(t, src, "new/cache/c", "excluded")
	}
	// remade is "d" removed and made again: a file of the same size and
	// mtime as the old one, another gone, a new one.
	remadeBefore := func(t *testing.T, src string) {
		mkfile(t, src, "d/same", "AAAA")
		mkfile(t, src, "d/gone", "gone")
	}
	remade := func(t *testing.T, src string) {
		fi, err := os.Stat(filepath.Join(src, "d/same"))
		if err != nil {
			t.Fatal(err)
		}
		rmAll(t, src, "d")
		mkfile(t, src, "d/same", "BBBB")
		mkfile(t, src, "d/new", "new")
		if err := os.Chtimes(filepath.Join(src, "d/same"), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	return []treeCase{
		{
			listable: true, name: "a new tree with nested directories, odd names and a symlink", before: old, change: newTree,
			changes: []change.Change{{Path: "new", Tree: true}},
		},
		{
			listable: true, name: "plain paths at and below the tree in the same batch", before: old,
			change: func(t *testing.T, src string) {
				newTree(t, src)
				mkfile(t, src, "old/g", "beside")
			},
			changes: []change.Change{{Path: "new/a"}, {Path: "new", Tree: true}, {Path: "new/sub", Tree: true}, {Path: "new/gone"}, {Path: "new"}, {Path: "old/g"}},
		},
		{
			listable: true, name: "sersync expressions: what they exclude stays out", filter: exprs, before: old, change: withExcluded,
			changes:  []change.Change{{Path: "new", Tree: true}},
			excluded: []string{"new/x.tmp", "new/sub/y.tmp", "new/cache"},
		},
		{
			listable: true, name: "rsync rules: what they exclude stays out", filter: rules, before: old, change: withExcluded,
			changes:  []change.Change{{Path: "new", Tree: true}},
			excluded: []string{"new/x.tmp", "new/sub/y.tmp", "new/cache"},
		},
		{
			listable: true, name: "a tree gone from the source is deleted", before: func(t *testing.T, src string) { old(t, src); newTree(t, src) },
			change:  func(t *testing.T, src string) { rmAll(t, src, "new") },
			changes: []change.Change{{Path: "new", Tree: true}},
		},
		{
			name: "removed and made again: old content goes, a same-size same-mtime rewrite arrives", before: remadeBefore, change: remade,
			changes: []change.Change{{Path: "d", Tree: true}},
		},
		{
			name: "a tree below a directory that is a file now", before: func(t *testing.T, src string) { mkfile(t, src, "p/q/r", "r") },
			change: func(t *testing.T, src string) {
				rmAll(t, src, "p")
				mkfile(t, src, "p", "a file now")
			},
			changes: []change.Change{{Path: "p/q", Tree: true}},
		},
		{
			listable: true, name: "a tree now a file", before: func(t *testing.T, src string) { mkfile(t, src, "p/q", "q") },
			change: func(t *testing.T, src string) {
				rmAll(t, src, "p")
				mkfile(t, src, "p", "a file now")
			},
			changes: []change.Change{{Path: "p", Tree: true}},
		},
		{
			name: "keeps deleted files: a tree gone stays, old content stays", keepDeleted: true,
			before: func(t *testing.T, src string) { newTree(t, src); remadeBefore(t, src) },
			change: func(t *testing.T, src string) {
				rmAll(t, src, "new")
				remade(t, src)
			},
			changes: []change.Change{{Path: "new", Tree: true}, {Path: "d", Tree: true}},
			kept:    []string{"new/a", "new/sub/deeper/c", "d/gone"},
		},
	}
}

// TestTreePushConverges pushes tree changes with the real rsync to a
// daemon and over ssh; the target must equal the source byte for byte,
// but for what the filter excludes and what a target that keeps deleted
// files keeps.
func TestTreePushConverges(t *testing.T) {
	testutil.Integration(t)
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	sshd := testutil.StartSSHD(t)
	kinds := []struct {
		name   string
		target func(opt Options, name string) (*Target, string)
	}{
		{"daemon", func(opt Options, name string) (*Target, string) {
			opt.Dest, opt.Port = "127.0.0.1::"+d.Module+"/"+name, d.Port
			return New(opt), filepath.Join(d.Dir, name)
		}},
		{"ssh", func(opt Options, _ string) (*Target, string) {
			dst := t.TempDir()
			opt.Dest, opt.SSHCommand = "127.0.0.1:"+dst, sshd.Command
			return New(opt), dst
		}},
	}
	var cases []treeCase
	for _, tc := range treeCases() {
		cases = append(cases, tc)
		if tc.listable {
			tc.name += " (fresh, listed)"
			tc.changes = slices.Clone(tc.changes)
			for i := range tc.changes {
				tc.changes[i].Fresh = tc.changes[i].Tree
			}
			cases = append(cases, tc)
		}
	}
	for _, kind := range kinds {
		for i, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				src := t.TempDir()
				opt := Options{Source: src, Params: []string{"-artuz"}, KeepDeleted: tc.keepDeleted}
				if tc.filter != nil {
					opt.Filter = tc.filter(t)
				}
				tgt, dst := kind.target(opt, fmt.Sprintf("case%d", i))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				tc.before(t, src)
				if err := tgt.FullPush(ctx, nil); err != nil {
					t.Fatalf("full push before: %v", err)
				}
				tc.change(t, src)
				if trees, _ := tgt.split(tc.changes); len(trees) > 0 {
					_, listed := tgt.listTrees(ctx, trees, tc.changes)
					if want := strings.HasSuffix(tc.name, "(fresh, listed)"); listed != want {
						t.Fatalf("trees listed: %v, want %v", listed, want)
					}
				}
				if err := tgt.Push(ctx, tc.changes); err != nil {
					t.Fatalf("push %+v: %v", tc.changes, err)
				}
				// Expected: an excluded path only in the source, a kept one
				// (or the directory holding it) only in the target.
				expected := func(l string, paths []string, side string) bool {
					for _, p := range paths {
						for q := p; q != "."; q = filepath.Dir(q) {
							if l == fmt.Sprintf("%q: only in %s (%s)", q, side, kindOf(t, side, src, dst, q)) {
								return true
							}
						}
					}
					return false
				}
				var diff []string
				for _, l := range testutil.DiffTrees(src, dst) {
					if !expected(l, tc.excluded, "src") && !expected(l, tc.kept, "dst") {
						diff = append(diff, l)
					}
				}
				if len(diff) > 0 {
					t.Fatalf("target differs from the source:\n%s", strings.Join(diff, "\n"))
				}
				for _, p := range tc.excluded {
					if _, err := os.Lstat(filepath.Join(dst, p)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("excluded %q is on the target (%v)", p, err)
					}
				}
				for _, p := range tc.kept {
					if _, err := os.Lstat(filepath.Join(dst, p)); err != nil {
						t.Errorf("%q, deleted on the source, is gone from a target that keeps it: %v", p, err)
					}
				}
			})
		}
	}
}

// kindOf is how DiffTrees names the type of rel on side.
func kindOf(t *testing.T, side, src, dst, rel string) string {
	root := src
	if side == "dst" {
		root = dst
	}
	fi, err := os.Lstat(filepath.Join(root, rel))
	switch {
	case err != nil:
		return "missing"
	case fi.IsDir():
		return "dir"
	case fi.Mode().IsRegular():
		return "file"
	}
	return fi.Mode().Type().String()
}

// A tree push that fails for one file (exit 23) fails partially, so the
// pool isolates it, and the rest of the tree arrives. rsync runs as nobody
// here, so that root's reading everything does not hide the failure.
func TestTreePushPartialFailure(t *testing.T) {
	testutil.Integration(t)
	bin := testutil.RsyncAsNobody(t)
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	src := filepath.Join(t.TempDir(), "src")
	// nobody must reach the source.
	for _, dir := range []string{filepath.Dir(filepath.Dir(src)), filepath.Dir(src)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkfile(t, src, "new/readable", "r")
	mkfile(t, src, "new/secret", "s")
	if err := os.Chmod(filepath.Join(src, "new/secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	tgt := New(Options{Binary: bin, Source: src, Dest: "127.0.0.1::" + d.Module, Port: d.Port, Params: []string{"-a"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := tgt.Push(ctx, []change.Change{{Path: "new", Tree: true}})
	if o := pusher.OutcomeOf(err); o != pusher.Partial {
		t.Fatalf("outcome %v (%v), want Partial", o, err)
	}
	if b, rerr := os.ReadFile(filepath.Join(d.Dir, "new/readable")); rerr != nil || string(b) != "r" {
		t.Errorf("the readable file of the tree: %q, %v (push: %v)", b, rerr, err)
	}
}

// TestFilteredFullPushSaysWhatItCouldNotRead: a full push with sersync's
// expressions copies the list of the paths it walked; a directory it could
// not read is not in it, and rsync, given the list, does not notice. The
// push must fail (the pool keeps the full push and says so) after copying
// the rest.
func TestFilteredFullPushSaysWhatItCouldNotRead(t *testing.T) {
	testutil.Integration(t)
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	flt := exprFilter(t, `(.*)\.tmp`)
	for i, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepDeleted=%v", keep), func(t *testing.T) {
			src := t.TempDir()
			mkfile(t, src, "a/f", "f")
			mkfile(t, src, "skip.tmp", "excluded")
			deepDir(t, filepath.Join(src, "deep"))
			sub := fmt.Sprintf("case%d", i)
			tgt := New(Options{Source: src, Dest: "127.0.0.1::" + d.Module + "/" + sub, Port: d.Port,
				Params: []string{"-a"}, Filter: flt, KeepDeleted: keep})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := tgt.FullPush(ctx, nil)
			if err == nil {
				t.Fatal("a full push that could not read a directory succeeded")
			}
			t.Logf("full push: %v", err)
			if keep {
				wantFile(t, filepath.Join(d.Dir, sub), "a/f", "f")
			}
		})
	}
}
