package rsync

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestShellQuote(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "a/b", "'a/b'"},
		{"quote", "it's", `'it'\''s'`},
		{"leading dash", "-rf", "'-rf'"},
		{"newline and star", "a\n*", "'a\n*'"},
		{"only quotes", "''", `''\'''\'''`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := shellQuote(tc.in); got != tc.want {
				t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
			}
			// The shell must read back exactly the name.
			out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(tc.in)).Output()
			if err != nil || string(out) != tc.in {
				t.Errorf("sh read %q back as %q (%v)", tc.in, out, err)
			}
		})
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"words", "ssh -p 22  -i key", []string{"ssh", "-p", "22", "-i", "key"}},
		{"single quotes", "ssh -i '/a b/key'", []string{"ssh", "-i", "/a b/key"}},
		{"double quotes", `ssh -o "ProxyCommand=nc \"h\" 22"`, []string{"ssh", "-o", `ProxyCommand=nc "h" 22`}},
		{"empty quotes", "ssh ''", []string{"ssh", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := splitCommand(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("splitCommand(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMoveCommand(t *testing.T) {
	tests := []struct {
		name     string
		dest     string
		from, to string
		want     []string
	}{
		{"root", "u@h:/b", "a", "b", []string{"ssh", "-p", "2", "u@h", "--", "mv", "-T", "--", "'/b/a'", "'/b/b'"}},
		{"parents made", "h:/b/", "x/a", "y/z/-b", []string{"ssh", "-p", "2", "h", "--", "mkdir", "-p", "--", "'/b/y/z'", "&&",
			"mv", "-T", "--", "'/b/x/a'", "'/b/y/z/-b'"}},
		{"login dir", "h:", "it's", "b", []string{"ssh", "-p", "2", "h", "--", "mv", "-T", "--", `'it'\''s'`, "'b'"}},
		{"ipv6", "[::1]:d", "a", "b", []string{"ssh", "-p", "2", "::1", "--", "mv", "-T", "--", "'d/a'", "'d/b'"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tgt := New(Options{Source: "/s", Dest: tc.dest, SSHCommand: "ssh -p 2"})
			if got := tgt.MoveCommand(tc.from, tc.to); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("MoveCommand = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBasisPushArgs(t *testing.T) {
	dirOpts := []string{"--recursive", "--modify-window=-1", "--delete", "--force", "--mkpath", "--from0", "--exclude-from=-"}
	fileOpts := []string{"--no-recursive", "--mkpath", "--from0", "--files-from=-"}
	tests := []struct {
		name     string
		keep     bool
		from, to string
		dir      bool
		want     []string // options it must carry
		absent   []string // and must not
		src, dst string
	}{
		{"dir at root", false, "a", "b", true, append([]string{"--link-dest=../a"}, dirOpts...), nil, "/s/b/", "h::m/b/"},
		{"dir deeper", false, "a/b", "c", true, []string{"--link-dest=../a/b"}, nil, "/s/c/", "h::m/c/"},
		{"dir from deeper", false, "a", "x/y/b", true, []string{"--link-dest=../../../a"}, nil, "/s/x/y/b/", "h::m/x/y/b/"},
		{"dir synced after mv", false, "", "b", true, dirOpts, []string{"--link-dest", "--copy-dest"}, "/s/b/", "h::m/b/"},
		{"file same dir", false, "d/a", "d/b", false, append([]string{"--link-dest=../d", "--fuzzy"}, fileOpts...),
			[]string{"--delete", "--recursive"}, "/s/d/", "h::m/d/"},
		{"file at root", false, "a", "b", false, []string{"--link-dest=.", "--fuzzy"}, nil, "/s/", "h::m/"},
		{"file to root", false, "d/a", "b", false, []string{"--link-dest=d", "--fuzzy"}, nil, "/s/", "h::m/"},
		{"file from root", false, "a", "d/e/b", false, []string{"--link-dest=../..", "--fuzzy"}, nil, "/s/d/e/", "h::m/d/e/"},
		{"old name kept: copies", true, "a", "b", true, []string{"--copy-dest=../a", "--recursive", "--delete"},
			[]string{"--link-dest"}, "/s/b/", "h::m/b/"},
		{"archive", true, "a", "b", true, []string{"--copy-dest=../a", "--recursive"},
			[]string{"--link-dest", "--delete", "--force"}, "/s/b/", "h::m/b/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tgt := New(Options{Source: "/s", Dest: "h::m", KeepDeleted: tc.name == "archive"})
			args := tgt.BasisPushArgs(tc.from, tc.to, tc.dir, tc.keep)
			opts := options(t, args)
			for _, w := range tc.want {
				if !hasOption(opts, w) {
					t.Errorf("no %s in %q", w, opts)
				}
			}
			for _, w := range append(tc.absent, "--ignore-times") {
				if hasOption(opts, w) {
					t.Errorf("%s in %q", w, opts)
				}
			}
			if got := args[len(args)-2:]; got[0] != tc.src || got[1] != tc.dst {
				t.Errorf("source and destination %q, want %q %q", got, tc.src, tc.dst)
			}
		})
	}
}

func TestResolveMoves(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"c", "b2", "x/y", "back"} {
		mkfile(t, src, p, p)
	}
	tests := []struct {
		name    string
		renames []move
		want    []move
	}{
		{"one", []move{{from: "a", to: "c"}}, []move{{from: "a", to: "c"}}},
		{"chain through a gone name", []move{{from: "a", to: "b"}, {from: "b", to: "c"}}, []move{{from: "a", to: "c"}}},
		{"chain through a name made again", []move{{from: "a", to: "b2"}, {from: "b2", to: "c"}}, []move{{from: "a", to: "b2"}, {from: "b2", to: "c"}}},
		{"gone again", []move{{from: "a", to: "gone"}}, nil},
		{"back to itself", []move{{from: "back", to: "tmp"}, {from: "tmp", to: "back"}}, nil},
		{"into itself", []move{{from: "x", to: "x/y"}}, nil},
		{"cycle bounded", []move{{from: "p", to: "q"}, {from: "q", to: "p"}, {from: "q", to: "c"}}, []move{{from: "p", to: "c"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolveMoves(src, tc.renames); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("resolveMoves(%v) = %v, want %v", tc.renames, got, tc.want)
			}
		})
	}
}

// moveTarget is a target kind for the move tests: a daemon module's
// subdirectory or a directory over the test sshd.
type moveTarget struct {
	name string
	make func(t *testing.T, src string, opt Options) (*Target, string)
}

// movingAll makes tgt move every rename, however small, so that the move
// itself is what the cases test.
func movingAll(tgt *Target) *Target {
	tgt.moveMin = 0
	return tgt
}

func moveTargets(t *testing.T) []moveTarget {
	sshd := testutil.StartSSHD(t)
	var n atomic.Int32
	daemon := func(d *testutil.Daemon) func(t *testing.T, src string, opt Options) (*Target, string) {
		return func(t *testing.T, src string, opt Options) (*Target, string) {
			sub := fmt.Sprintf("case%d", n.Add(1))
			opt.Source, opt.Dest, opt.Port = src, "127.0.0.1::"+d.Module+"/"+sub, d.Port
			return movingAll(New(opt)), filepath.Join(d.Dir, sub)
		}
	}
	kinds := []moveTarget{
		{"daemon", daemon(testutil.StartDaemon(t, testutil.DaemonOptions{}))},
		{"ssh", func(t *testing.T, src string, opt Options) (*Target, string) {
			dst := t.TempDir()
			opt.Source, opt.Dest, opt.SSHCommand = src, "127.0.0.1:"+dst, sshd.Command
			return movingAll(New(opt)), dst
		}},
	}
	if os.Geteuid() == 0 {
		// Not chrooted, the daemon sanitises a --link-dest=../x instead:
		// one that stays in the module must survive it.
		kinds = append(kinds, moveTarget{"daemon-no-chroot", daemon(testutil.StartDaemon(t, testutil.DaemonOptions{NoChroot: true}))})
	}
	return kinds
}

// pushRenames pushes a batch as the watcher makes it of renames: the old
// path (its removal) and the new one with From (a tree when a directory),
// and the paths changed besides.
func pushRenames(ctx context.Context, t *testing.T, tgt *Target, renames []move, also ...string) error {
	t.Helper()
	var changes []change.Change
	for _, r := range renames {
		fi, err := os.Lstat(filepath.Join(tgt.opt.Source, r.to))
		if !slices.Contains(also, "!"+r.from) {
			changes = append(changes, change.Change{Path: r.from})
		}
		changes = append(changes, change.Change{Path: r.to, From: r.from, Tree: err == nil && fi.IsDir()})
	}
	also = slices.DeleteFunc(slices.Clone(also), func(p string) bool { return strings.HasPrefix(p, "!") })
	return tgt.Push(ctx, append(changes, change.Of(also)...))
}

func randomFile(t *testing.T, root, rel string, size int) {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	mkfile(t, root, rel, string(b))
}

func rename(t *testing.T, root, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, to)), 0o755); err != nil {
		t.Fatal(err)
	}
	// rename(2) itself: os.Rename refuses to replace a directory.
	if err := syscall.Rename(filepath.Join(root, from), filepath.Join(root, to)); err != nil {
		t.Fatal(err)
	}
}

// TestMovesOnTarget renames on the source, pushes the batch (moves, then
// the listed push) to a real daemon and over a real ssh, and compares the
// target with the source byte for byte; where the moved content is big it
// also checks the push sent under 1 % of it.
func TestMovesOnTarget(t *testing.T) {
	testutil.Integration(t)
	const big = 2 << 20 // two files: 4 MiB to move
	odd := []string{"new\nline", "-rf", "it's \"q\"", "sp ace*", "$(touch pwned)"}
	tests := []struct {
		name     string
		before   func(t *testing.T, src string)
		change   func(t *testing.T, src string) []move
		also     []string // paths changed besides the renames; "!p": p's removal is not in the batch
		earlier  []string // pushed in a batch before the renames'
		maxBytes int64    // 0: not measured
		// fullNoChroot: a daemon without chroot gets it whole (its fuzzy
		// search does not look in a --link-dest directory: rsync 3.5.0).
		fullNoChroot bool
	}{
		{
			name: "big directory",
			before: func(t *testing.T, src string) {
				randomFile(t, src, "d/big1", big)
				randomFile(t, src, "d/sub/big2", big)
				for i := range 30 {
					mkfile(t, src, "d/small/"+string(rune('a'+i)), strings.Repeat("s", i))
				}
			},
			change: func(t *testing.T, src string) []move {
				rename(t, src, "d", "e")
				return []move{{from: "d", to: "e"}}
			},
			maxBytes: 2 * big / 100,
		},
		{
			name:   "big file into a new directory",
			before: func(t *testing.T, src string) { randomFile(t, src, "a/f", big) },
			change: func(t *testing.T, src string) []move {
				rename(t, src, "a/f", "n/m/g")
				return []move{{from: "a/f", to: "n/m/g"}}
			},
			also:         []string{"n", "n/m"},
			maxBytes:     big / 100,
			fullNoChroot: true,
		},
		{
			name: "odd names",
			before: func(t *testing.T, src string) {
				for _, n := range odd {
					mkfile(t, src, "o/"+n, n)
					mkfile(t, src, n+"dir/"+n, n)
				}
			},
			change: func(t *testing.T, src string) []move {
				var ms []move
				for _, n := range odd {
					rename(t, src, "o/"+n, "o/"+n+"'2")
					rename(t, src, n+"dir", "-"+n+"\ndir")
					ms = append(ms, move{from: "o/" + n, to: "o/" + n + "'2"}, move{from: n + "dir", to: "-" + n + "\ndir"})
				}
				return ms
			},
		},
		{
			name:   "chain",
			before: func(t *testing.T, src string) { randomFile(t, src, "a/f", big) },
			change: func(t *testing.T, src string) []move {
				rename(t, src, "a", "b")
				rename(t, src, "b", "c")
				return []move{{from: "a", to: "b"}, {from: "b", to: "c"}}
			},
			maxBytes: big / 100,
		},
		{
			name: "file over file, dir over empty dir",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "f1", "one")
				mkfile(t, src, "f2", "two")
				mkfile(t, src, "d1/x", "x")
				if err := os.Mkdir(filepath.Join(src, "d2"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			change: func(t *testing.T, src string) []move {
				rename(t, src, "f1", "f2")
				rename(t, src, "d1", "d2")
				return []move{{from: "f1", to: "f2"}, {from: "d1", to: "d2"}}
			},
		},
		{
			name: "written to after the rename",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "d/a", "a")
				mkfile(t, src, "d/b", "b")
			},
			change: func(t *testing.T, src string) []move {
				rename(t, src, "d", "e")
				mkfile(t, src, "e/a", "rewritten")
				mkfile(t, src, "e/new", "new")
				rmAll(t, src, "e/b")
				return []move{{from: "d", to: "e"}}
			},
			also: []string{"e/b"},
		},
		{
			// mv app.log app.log.1, a new app.log, and the new one pushed
			// in a batch of its own before the rename's: moving app.log
			// on the target would lose it there.
			name:   "old name on the source again, pushed before",
			before: func(t *testing.T, src string) { randomFile(t, src, "app.log", big) },
			change: func(t *testing.T, src string) []move {
				rename(t, src, "app.log", "app.log.1")
				mkfile(t, src, "app.log", "new log")
				return []move{{from: "app.log", to: "app.log.1"}}
			},
			earlier: []string{"app.log"},
			also:    []string{"!app.log"}, // not in the rename's batch
			// Not cheap: the target's old content was gone before.
		},
		{
			name:   "rewritten at the same size at once",
			before: func(t *testing.T, src string) { mkfile(t, src, "d/a", "aaaaa") },
			change: func(t *testing.T, src string) []move {
				rename(t, src, "d", "e")
				mkfile(t, src, "e/a", "bbbbb")
				return []move{{from: "d", to: "e"}}
			},
			also: []string{"e/a"},
		},
		{
			name:   "stale: old name not on the target",
			before: func(t *testing.T, src string) {},
			change: func(t *testing.T, src string) []move {
				mkfile(t, src, "e/a", "a")
				return []move{{from: "d", to: "e"}}
			},
		},
		{
			name: "wrong: old name holds other content",
			before: func(t *testing.T, src string) {
				mkfile(t, src, "d/a", "old a")
				mkfile(t, src, "d/z", "z")
			},
			change: func(t *testing.T, src string) []move {
				rmAll(t, src, "d")
				mkfile(t, src, "e/a", "other")
				return []move{{from: "d", to: "e"}}
			},
		},
	}
	for _, kind := range moveTargets(t) {
		for _, tc := range tests {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				src := t.TempDir()
				tc.before(t, src)
				var sent atomic.Int64
				tgt, dst := kind.make(t, src, Options{Params: []string{"-artuz"},
					OnBytesSent: func(_ string, n int64) { sent.Add(n) }})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := tgt.FullPush(ctx, nil); err != nil {
					t.Fatalf("full push before: %v", err)
				}
				renames := tc.change(t, src)
				if tc.earlier != nil {
					if err := tgt.Push(ctx, change.Of(tc.earlier)); err != nil {
						t.Fatalf("push before: %v", err)
					}
				}
				sent.Store(0)
				if err := pushRenames(ctx, t, tgt, renames, tc.also...); err != nil {
					t.Fatalf("push: %v", err)
				}
				if diff := testutil.DiffTrees(src, dst); len(diff) > 0 {
					t.Errorf("target differs from the source:\n%s", strings.Join(diff, "\n"))
				}
				if tc.maxBytes > 0 && sent.Load() > tc.maxBytes && !(tc.fullNoChroot && kind.name == "daemon-no-chroot") {
					t.Errorf("sent %d bytes, want at most %d", sent.Load(), tc.maxBytes)
				}
				t.Logf("sent %d bytes", sent.Load())
			})
		}
	}
}

// TestMoveKeepsDeleted: an archive target (<delete start="false">) keeps
// the old name; the new one arrives from it as a basis, sending little.
func TestMoveKeepsDeleted(t *testing.T) {
	testutil.Integration(t)
	for _, kind := range moveTargets(t) {
		t.Run(kind.name, func(t *testing.T) {
			src := t.TempDir()
			randomFile(t, src, "d/f", 1<<20)
			var sent atomic.Int64
			tgt, dst := kind.make(t, src, Options{Params: []string{"-artuz"}, KeepDeleted: true,
				OnBytesSent: func(_ string, n int64) { sent.Add(n) }})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tgt.FullPush(ctx, nil); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(src, "d/f"))
			if err != nil {
				t.Fatal(err)
			}
			rename(t, src, "d", "e")
			sent.Store(0)
			if err := pushRenames(ctx, t, tgt, []move{{from: "d", to: "e"}}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"d/f", "e/f"} {
				got, err := os.ReadFile(filepath.Join(dst, p))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s on the target: %d bytes, %v; want the file", p, len(got), err)
				}
			}
			a, _ := os.Stat(filepath.Join(dst, "d/f"))
			b, _ := os.Stat(filepath.Join(dst, "e/f"))
			if a != nil && b != nil && os.SameFile(a, b) {
				t.Errorf("old and new name share an inode on an archive target")
			}
			if n := sent.Load(); n > 1<<20/100 {
				t.Errorf("sent %d bytes, want under 1 %%", n)
			}
		})
	}
}

func TestPushedWhole(t *testing.T) {
	synced := map[string]bool{"e": true, "x/y": true}
	in := []change.Change{
		{Path: "d"}, {Path: "e", Tree: true, From: "d"}, {Path: "e/f"}, {Path: "e/g", From: "e/h"},
		{Path: "ee"}, {Path: "x"}, {Path: "x/y/z"}, {Path: "x/yz"},
	}
	want := []change.Change{{Path: "d"}, {Path: "ee"}, {Path: "x"}, {Path: "x/yz"}}
	if got := pushedWhole(in, synced); !reflect.DeepEqual(got, want) {
		t.Errorf("pushedWhole = %+v, want %+v", got, want)
	}
	if got := pushedWhole(in, nil); !reflect.DeepEqual(got, in) {
		t.Errorf("nothing synced: %+v, want all", got)
	}
}

// TestWorthMoving: a file of moveMinSize or more, a directory whose files
// hold that much or that has moveMinEntries entries, is moved on the
// target; a smaller file (a save written aside and renamed over the old
// name), a smaller directory or a symlink is sent again, which costs less
// than a call of its own; a path gone again stays for resolveMoves'
// chains.
func TestWorthMoving(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "d/x", "x")
	mkfile(t, src, "d/sub/y", "y")
	mkfile(t, src, "small", "s")
	mkfile(t, src, "big", strings.Repeat("b", moveMinSize))
	half := strings.Repeat("h", moveMinSize/2)
	mkfile(t, src, "bigdir/a", half)
	mkfile(t, src, "bigdir/sub/b", half)
	for i := range moveMinEntries {
		mkfile(t, src, fmt.Sprintf("many/%04d", i), "")
	}
	if err := os.Symlink("big", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	tgt := New(Options{Source: src, Dest: "h::m"})
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"d", false}, {"bigdir", true}, {"many", true}, {"big", true},
		{"small", false}, {"link", false}, {"gone", true},
	} {
		if got := tgt.worthMoving(tc.rel); got != tc.want {
			t.Errorf("worthMoving(%q) = %v, want %v", tc.rel, got, tc.want)
		}
	}
	// Small renames are no moves: nothing runs before the push.
	if ms := tgt.moves([]change.Change{{Path: "small", From: "old"}, {Path: "d", From: "e"}, {Path: "bigdir", From: "f", Tree: true}}); len(ms) != 1 || ms[0].to != "bigdir" {
		t.Fatalf("moves = %+v, want the big directory's alone", ms)
	}
}
