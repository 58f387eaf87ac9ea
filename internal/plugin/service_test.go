package plugin

// Tests of the files that run sersyncd as a service: scripts/sersyncd.service
// and scripts/install.sh. They live here because scripts/ holds no Go
// package of its own.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const repoRoot = "../.."

func unitLines(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "scripts/sersyncd.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("unit line %q is no key=value", l)
			continue
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

func TestServiceUnitSettings(t *testing.T) {
	keys := unitLines(t)
	want := map[string]string{
		"Type":            "notify",
		"WatchdogSec":     "60",
		"ExecStart":       "/usr/local/bin/sersyncd -o /etc/sersyncd/confxml.xml --db /var/lib/sersyncd/queue.db",
		"ExecReload":      "/bin/kill -HUP $MAINPID",
		"Restart":         "on-failure",
		"StateDirectory":  "sersyncd",
		"ProtectSystem":   "strict",
		"ProtectHome":     "read-only",
		"PrivateTmp":      "yes",
		"NoNewPrivileges": "yes",
		"WantedBy":        "multi-user.target",
	}
	for k, v := range want {
		if got := keys[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if len(keys["LimitNOFILE"]) != 1 {
		t.Error("no LimitNOFILE")
	}
	if strings.Contains(keys["ExecStart"][0], " -d") {
		t.Error("ExecStart detaches; Type=notify needs the foreground")
	}
}

func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze on PATH: cannot verify scripts/sersyncd.service")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "scripts/sersyncd.service"))
	if err != nil {
		t.Fatal(err)
	}
	// verify insists that ExecStart's binary exists; sersyncd need not be
	// installed for the unit's syntax to be checked.
	unit := strings.Replace(string(b), "ExecStart=/usr/local/bin/sersyncd", "ExecStart=/bin/true", 1)
	path := filepath.Join(t.TempDir(), "sersyncd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("--man")) {
		// systemd before 235 has no --man; it then also looks for the man page.
		out, err = exec.CommandContext(ctx, analyze, "verify", path).CombinedOutput()
	}
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// fakeRepo copies what install.sh installs into a temporary tree with a
// stand-in binary, so the test neither builds nor touches the real bin/.
func fakeRepo(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	for _, f := range []string{"scripts/install.sh", "scripts/sersyncd.service", "confxml.xml", "docs/sersyncd.1"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(repo, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeBin(t, repo, "v1")
	return repo
}

func writeBin(t *testing.T, repo, version string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(repo, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "bin/sersyncd"), []byte("#!/bin/sh\necho "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInstallScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on PATH")
	}
	repo := fakeRepo(t)
	stage := filepath.Join(t.TempDir(), "stage")
	install := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bash, filepath.Join(repo, "scripts/install.sh"), "--prefix", stage, "--no-build")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	files := []struct {
		path string
		mode os.FileMode
		from string // the repo file it is a copy of
	}{
		{"usr/local/bin/sersyncd", 0o755, "bin/sersyncd"},
		{"etc/systemd/system/sersyncd.service", 0o644, "scripts/sersyncd.service"},
		{"etc/sersyncd/confxml.xml", 0o644, "confxml.xml"},
		{"usr/local/share/man/man1/sersyncd.1", 0o644, "docs/sersyncd.1"},
	}
	check := func() {
		t.Helper()
		for _, f := range files {
			fi, err := os.Stat(filepath.Join(stage, f.path))
			if err != nil {
				t.Errorf("not installed: %v", err)
				continue
			}
			if fi.Mode().Perm() != f.mode {
				t.Errorf("%s: mode %v, want %v", f.path, fi.Mode().Perm(), f.mode)
			}
			if f.from == "confxml.xml" {
				continue
			}
			got, _ := os.ReadFile(filepath.Join(stage, f.path))
			want, _ := os.ReadFile(filepath.Join(repo, f.from))
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s", f.path, f.from)
			}
		}
		fi, err := os.Stat(filepath.Join(stage, "var/lib/sersyncd"))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("var/lib/sersyncd: %v %v, want a directory with mode 0700", fi, err)
		}
	}
	check()

	// Again, with a new binary and an edited config: the binary is
	// replaced, the config kept.
	conf := filepath.Join(stage, "etc/sersyncd/confxml.xml")
	edited := []byte("<head><!-- mine --></head>\n")
	if err := os.WriteFile(conf, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	writeBin(t, repo, "v2")
	out := install()
	check()
	if got, _ := os.ReadFile(conf); !bytes.Equal(got, edited) {
		t.Errorf("the existing config was overwritten:\n%s", got)
	}
	if !strings.Contains(out, "kept") {
		t.Errorf("output does not say the config was kept:\n%s", out)
	}
	if strings.Contains(out, "daemon-reload done") {
		t.Errorf("systemctl was called with --prefix:\n%s", out)
	}
	leftovers, _ := filepath.Glob(filepath.Join(stage, "*/*/*/.*.tmp.*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}
}
