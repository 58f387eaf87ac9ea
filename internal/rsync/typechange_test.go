package rsync

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestUnderTypeChanges(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "d/sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "file"), nil, 0o644))
	must(os.Symlink("d", filepath.Join(root, "link")))
	tests := []struct {
		name  string
		paths []string
		want  []string
	}{
		{"directories stay", []string{"d/sub/x", "d/y", "z"}, []string{"d/sub/x", "d/y", "z"}},
		{"below a file", []string{"file/a", "file/b/c"}, []string{"file"}},
		{"below a symlink to a directory, never followed", []string{"link/sub/x"}, []string{"link"}},
		{"below a missing directory: the topmost missing one", []string{"gone/a/b", "d/gone/c"}, []string{"gone", "d/gone"}},
		{"the ancestor listed too", []string{"link", "link/x", "d/sub"}, []string{"link", "d/sub"}},
		{"names with odd bytes", []string{"file/\n;#", "d/-x"}, []string{"file", "d/-x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := change.Paths(underTypeChanges(root, change.Of(tc.paths))); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("underTypeChanges(%q) = %q, want %q", tc.paths, got, tc.want)
			}
		})
	}
	// A tree below a directory that is no longer one is a plain change of
	// that ancestor; one still in place stays a tree, and a plain change of
	// the same path merges into it.
	got := underTypeChanges(root, []change.Change{{Path: "file/new", Tree: true}, {Path: "d/sub", Tree: true}, {Path: "d/sub"}, {Path: "gone/t", Tree: true}})
	want := []change.Change{{Path: "file"}, {Path: "d/sub", Tree: true}, {Path: "gone"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("underTypeChanges of trees = %+v, want %+v", got, want)
	}
}

// typeChange is a tree, a change of one entry's type, and the paths queued
// below that entry before the change (the watcher saw them; the entry's
// own event may come in a later batch).
type typeChange struct {
	name   string
	before func(t *testing.T, src string)
	change func(t *testing.T, src string)
	queued []string
}

func typeChanges(outside string) []typeChange {
	release := func(t *testing.T, src string, n string) {
		mkfile(t, src, "releases/"+n+"/index.html", "release "+n)
		mkfile(t, src, "releases/"+n+"/css/site.css", "body{} "+n)
	}
	return []typeChange{
		{
			name: "dir to file",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "a/b/f", "f")
				mkfile(t, src, "a/b/c/g", "g")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "a/b")
				mkfile(t, src, "a/b", "now a file")
			},
			queued: []string{"a/b/f", "a/b/c/g", "a/b/c"},
		},
		{
			name: "dir to symlink to a dir inside the tree",
			before: func(t *testing.T, src string) {
				release(t, src, "1")
				release(t, src, "2")
				mkfile(t, src, "current/index.html", "release 1")
				mkfile(t, src, "current/css/site.css", "body{} 1")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "current")
				symlink(t, "releases/2", src, "current")
			},
			queued: []string{"current/index.html", "current/css/site.css"},
		},
		{
			name: "dir to symlink to a dir outside the tree",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "current/index.html", "inside")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "current")
				symlink(t, outside, src, "current")
			},
			queued: []string{"current/index.html"},
		},
		{
			name: "symlink to dir",
			before: func(t *testing.T, src string) {
				release(t, src, "1")
				symlink(t, "releases/1", src, "current")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "current")
				mkfile(t, src, "current/index.html", "a directory now")
			},
			// Pushed through the target's symlink, this would overwrite
			// releases/1/index.html there.
			queued: []string{"current/index.html"},
		},
		{
			name: "file to dir",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "g", "a file")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "g")
				mkfile(t, src, "g/h/i", "below what was a file")
			},
			queued: []string{"g/h/i"},
		},
		{
			name: "dir to file two levels up, the entry queued in the same batch",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "x/y/z/f", "f")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "x")
				mkfile(t, src, "x", "x is a file")
			},
			queued: []string{"x/y/z/f", "x", "x/y"},
		},
		{
			name: "dir removed",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "r/s/f", "f")
				mkfile(t, src, "keep", "k")
			},
			change: func(t *testing.T, src string) {
				rmAll(t, src, "r")
			},
			queued: []string{"r/s/f"},
		},
	}
}

// TestTypeChangesConverge pushes, for every change of a directory's type
// with paths below it queued, the queued paths through a real pool, real
// queue and real rsync to a daemon and over ssh: the target must end equal
// to the source with nothing failing or left in the queue.
func TestTypeChangesConverge(t *testing.T) {
	testutil.Integration(t)
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	sshd := testutil.StartSSHD(t)
	outside := t.TempDir()
	mkfile(t, outside, "index.html", "outside the tree")
	kinds := []struct {
		name   string
		target func(src, name string) (*Target, string)
	}{
		{"daemon", func(src, name string) (*Target, string) {
			return New(Options{Source: src, Dest: "127.0.0.1::" + d.Module + "/" + name, Port: d.Port, Params: []string{"-artuz"}}),
				filepath.Join(d.Dir, name)
		}},
		{"ssh", func(src, _ string) (*Target, string) {
			dst := t.TempDir()
			return New(Options{Source: src, Dest: "127.0.0.1:" + dst, SSHCommand: sshd.Command, Params: []string{"-artuz"}}), dst
		}},
	}
	for _, kind := range kinds {
		for i, tc := range typeChanges(outside) {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				src := t.TempDir()
				tc.before(t, src)
				tgt, dst := kind.target(src, "case"+string(rune('a'+i)))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := tgt.FullPush(ctx, nil); err != nil {
					t.Fatalf("full push of the tree before: %v", err)
				}
				if diff := testutil.DiffTrees(src, dst); len(diff) > 0 {
					t.Fatalf("target differs before the change:\n%s", strings.Join(diff, "\n"))
				}
				tc.change(t, src)
				name := tgt.Name()
				q, _ := testutil.OpenQueue(t, queue.Open, "", name)
				if err := q.AddTarget(name, tc.queued); err != nil {
					t.Fatal(err)
				}
				log := testutil.QuietLog()
				p := pusher.New(q, []pusher.Target{tgt}, pusher.Options{Workers: 2, BackoffMax: time.Minute, Log: log})
				stop, cancelStop := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); p.Run(stop, ctx) }()
				defer func() { cancelStop(); <-done }()
				deadline := time.Now().Add(10 * time.Second)
				for q.Pending(name) > 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := q.Pending(name); n > 0 {
					failed, _, _ := q.Failing(name)
					reason, _ := q.LastFailure(name)
					t.Fatalf("%d paths still queued after 10s, %d failed: %s", n, failed, reason)
				}
				if s := p.Status()[0]; s.ConsecutiveFailures > 0 || s.LastError != "" {
					t.Errorf("status shows a failure: %+v", s)
				}
				if diff := testutil.DiffTrees(src, dst); len(diff) > 0 {
					t.Errorf("target differs from the source:\n%s", strings.Join(diff, "\n"))
				}
			})
		}
	}
}

func mkfile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rmAll(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, to, root, rel string) {
	t.Helper()
	if err := os.Symlink(to, filepath.Join(root, rel)); err != nil {
		t.Fatal(err)
	}
}
