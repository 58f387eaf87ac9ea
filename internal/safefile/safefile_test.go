package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOpensNeverFollowLinks: every way of opening refuses a link at the
// path, to a file or dangling, and leaves its target as it was.
func TestOpensNeverFollowLinks(t *testing.T) {
	opens := []struct {
		name string
		open func(path string) error
	}{
		{"OpenAppend", func(p string) error {
			f, err := OpenAppend(p, 0o600)
			if err == nil {
				_, err = f.WriteString("written\n")
				f.Close()
			}
			return err
		}},
		{"Create", func(p string) error {
			f, err := Create(p, 0o600)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"Rotating", func(p string) error {
			r := &Rotating{Path: p, MaxBytes: 1 << 20, Backups: 1, Perm: 0o600}
			_, err := r.Write([]byte("written\n"))
			r.Close()
			return err
		}},
	}
	for _, o := range opens {
		for _, dangling := range []bool{false, true} {
			name := o.name + "/link to a file"
			if dangling {
				name = o.name + "/dangling link"
			}
			t.Run(name, func(t *testing.T) {
				victim := filepath.Join(t.TempDir(), "victim")
				if !dangling {
					if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				path := filepath.Join(t.TempDir(), "file")
				if err := os.Symlink(victim, path); err != nil {
					t.Fatal(err)
				}
				if err := o.open(path); err == nil || !strings.Contains(err.Error(), path) {
					t.Fatalf("open = %v; want a refusal naming %s", err, path)
				}
				b, err := os.ReadFile(victim)
				if dangling && !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the dangling link's target was created: %q, %v", b, err)
				}
				if !dangling && string(b) != "precious\n" {
					t.Fatalf("the link's target was written: %q, %v", b, err)
				}
			})
		}
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	sticky := filepath.Join(dir, "sticky")
	open := filepath.Join(dir, "open")
	for d, mode := range map[string]os.FileMode{sticky: 0o777 | os.ModeSticky, open: 0o777} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	// Another user's: nobody's, as root makes them; skipped otherwise.
	othersDir := filepath.Join(dir, "others")
	othersSticky := filepath.Join(dir, "others-sticky")
	othersFile := filepath.Join(sticky, "theirs")
	for _, d := range []string{othersDir, othersSticky} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(othersSticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(othersFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	asRoot := os.Geteuid() == 0
	if asRoot {
		for _, p := range []string{othersDir, othersSticky, othersFile} {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
	}
	openAbove := filepath.Join(open, "sub")
	if err := os.Mkdir(openAbove, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, refusal string
	}{
		{"new file", filepath.Join(dir, "new"), ""},
		{"existing file", filepath.Join(dir, "plain"), ""},
		{"new file in a sticky world-writable directory", filepath.Join(sticky, "new"), ""},
		{"world-writable directory without the sticky bit", filepath.Join(open, "new"), "sticky bit"},
		{"a FIFO", filepath.Join(dir, "fifo"), "not a regular file"},
		{"a directory", dir, "not a regular file"},
		{"missing directory", filepath.Join(dir, "no/such/file"), ""},
		{"world-writable directory without the sticky bit further up", filepath.Join(openAbove, "new"), "sticky bit"},
	}
	if asRoot {
		cases = append(cases, []struct{ name, path, refusal string }{
			{"another user's directory", filepath.Join(othersDir, "new"), "belongs to uid 65534"},
			{"another user's sticky world-writable directory", filepath.Join(othersSticky, "new"), "belongs to uid 65534"},
			{"another user's file in a sticky world-writable directory", othersFile, "belongs to uid 65534"},
		}...)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.path)
			if tc.refusal == "" && err != nil {
				t.Fatalf("Check = %v; want nil", err)
			}
			if tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)) {
				t.Fatalf("Check = %v; want %q", err, tc.refusal)
			}
		})
	}
}

func TestRotatingKeepsBackups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	r := &Rotating{Path: path, MaxBytes: 100, Backups: 2, Perm: 0o600}
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 10 {
		if _, err := r.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Stat(p)
		if err != nil || fi.Size() > 100 || fi.Size() == 0 {
			t.Fatalf("%s: %v, %v", p, fi, err)
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a third backup: %v", err)
	}
}
