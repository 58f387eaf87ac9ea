package filter

import (
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseRulesErrors(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"merge", "merge /etc/other\n", `rules:1: "merge /etc/other": not an include or exclude rule`},
		{"modifier", "-/ /abs\n", `rules:1: "-/ /abs": rule modifiers ("-/") are not supported`},
		{"clear", "- a\n!\n", `rules:2: "!": not an include or exclude rule`},
		{"unclosed class", "+ keep\n- [abc\n", `rules:2: "- [abc": unclosed character class`},
		{"empty pattern", "- \n", `rules:1: "- ": empty pattern`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRules("rules", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestRulesMatch(t *testing.T) {
	rules := "# comment\n; also\n\n+ keep/**\n+ */\n- *.tmp\ninclude *.txt\nexclude *\n"
	rs, err := ParseRules("r", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		path  string
		dir   bool
		want  bool
		which string
	}{
		{"text file", "a/b.txt", false, false, ""},
		{"tmp file", "a/b.tmp", false, true, "r:6: - *.tmp"},
		{"other file", "a/b.bin", false, true, "r:8: exclude *"},
		{"any directory", "a/b", true, false, ""},
		{"below keep", "keep/x.bin", false, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			which, got := rs.Match(tc.path, tc.dir)
			if got != tc.want || which != tc.which {
				t.Fatalf("Match(%q) = %q %v, want %q %v", tc.path, which, got, tc.which, tc.want)
			}
		})
	}
}

// ruleTree is a tree whose names exercise the pattern kinds below.
var ruleTree = []string{
	"a/", "a/b/", "a/b/c/", "keep/", "keep/sub/", "x.tmp/", "logs/", "logs/old/", "c/",
	"a/f.txt", "a/b/f.tmp", "a/b/c/g", "keep/k.tmp", "keep/sub/s", "x.tmp/in", "logs/l.log",
	"logs/old/o.log", "top.tmp", "top.txt", "f.txt", "[x]", "-dash", "c/c", "a/c", "sub",
}

var rulePatterns = []string{
	"*.tmp", "*.log", "a", "a/", "/a", "/a/", "a/b", "b/c", "**/c", "a/**", "keep/***", "keep/**",
	"*", "*/", "logs/*/o.log", "**.tmp", "/logs/**", "?.txt", "[a-k]*", "[!a]*", "top*", "sub",
	"/keep/sub/", "f.txt", "a/*/c", "[[]x]", "c", "/c", "c/", "**/b/**", "a/b/c/", "*/c", "-dash",
	"[[:digit:][:alpha:]].txt", "b", "*/*/", "/*", "/*/", "**", "***", "*/***", "o*",
}

// TestRulesAgreeWithRsync runs rsync itself (a dry run of a recursive
// transfer with the rules as a merge file) on random rule lists and checks
// that Rules decides every path of the tree the same way.
func TestRulesAgreeWithRsync(t *testing.T) {
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		t.Skip("rsync not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for _, p := range ruleTree {
		full := filepath.Join(src, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	isDir := map[string]bool{}
	_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if p != src {
			rel := p[len(src)+1:]
			paths = append(paths, rel)
			isDir[rel] = d.IsDir()
		}
		return nil
	})
	rulesFile := filepath.Join(dir, "rules")
	rng := rand.New(rand.NewPCG(1, 2))
	rounds := 150
	if testing.Short() {
		rounds = 30
	}
	// Hand-picked lists first: those a random pick rarely makes.
	fixed := []string{
		"+ /a\n- /*\n", "+ a/\n- /*/\n", "+ /logs/\n- /logs/*\n", "+ */\n+ *.txt\n- *\n",
		"+ keep/***\n- *\n", "- a/b/\n+ a/**\n- *\n", "+ /a/b/c/\n- a/*/*\n",
	}
	for round := 0; round < len(fixed)+rounds; round++ {
		var text strings.Builder
		if round < len(fixed) {
			text.WriteString(fixed[round])
		}
		for n := 1 + rng.IntN(4); round >= len(fixed) && n > 0; n-- {
			text.WriteString([]string{"+ ", "- "}[rng.IntN(2)])
			text.WriteString(rulePatterns[rng.IntN(len(rulePatterns))])
			text.WriteByte('\n')
		}
		if err := os.WriteFile(rulesFile, []byte(text.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(rsync, "-r", "--dry-run", "--out-format=%n", "--filter=merge "+rulesFile,
			src+"/", filepath.Join(dir, "empty-dst")+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("rsync: %v\n%s", err, out)
		}
		var want []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSuffix(l, "/"); l != "" && l != "." {
				want = append(want, l)
			}
		}
		rs, err := ParseRules("rules", []byte(text.String()))
		if err != nil {
			t.Fatalf("rules %q: %v", text.String(), err)
		}
		var got []string
		for _, p := range paths {
			if !rs.Excluded(p, isDir[p]) {
				got = append(got, p)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("rules:\n%s\nrsync transfers %q\nRules include  %q", text.String(), want, got)
		}
	}
}

// FuzzParseRules: any file either parses or is refused with its line, and a
// parsed list decides any path without panicking, a directory below an
// excluded one staying excluded.
func FuzzParseRules(f *testing.F) {
	f.Add("+ keep/***\n- *.tmp\n+ */\n- *\n", "a/b.tmp")
	f.Add("- [a-\n", "x")
	f.Add("include **/c\nexclude /a/", "a/c")
	f.Fuzz(func(t *testing.T, text, path string) {
		rs, err := ParseRules("f", []byte(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") {
				t.Fatalf("error without the file and line: %v", err)
			}
			return
		}
		if rs.Excluded(path, true) && !rs.Excluded(path+"/child", false) {
			t.Fatalf("%q excluded but %q/child is not", path, path)
		}
	})
}
