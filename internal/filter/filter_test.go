package filter

import (
	"strings"
	"testing"
)

// The stock confxml.xml's expressions, with what sersync 2.5 did with each
// path (boost::regex_match on the forms Inotify.cpp builds).
func TestExcluded(t *testing.T) {
	stock := []string{`(.*)\.svn`, `(.*)\.gz`, `^info/*`, `^static/*`}
	cases := []struct {
		name  string
		exprs []string
		path  string
		dir   bool
		want  bool
	}{
		{"no filter", nil, "a.gz", false, false},
		{"suffix at the root", stock, "a.gz", false, true},
		{"suffix deeper (the /-form)", stock, "logs/a.gz", false, true},
		{"suffix is not a substring", stock, "a.gzip", false, false},
		{"suffix inside a name deeper", stock, "logs/a.gz.txt", false, false},
		{"inside excluded dir", stock, "repo/.svn/entries", false, true},
		{"anchored dir itself", stock, "info", true, true},
		{"anchored dir as a file name", stock, "info", false, true},
		{"below anchored dir", stock, "info/x", false, true},
		{"anchored name is not a prefix", stock, "information.txt", false, false},
		{"anchored dir only at the root", stock, "a/info/x", false, false},
		{"plain file", stock, "index.html", false, false},
		{"dir form only for directories", []string{`^cache/.*`}, "cache", false, false},
		{"dir form of a directory", []string{`^cache/.*`}, "cache", true, true},
		{"dir form of a parent", []string{`^cache/.*`}, "cache/a/b", false, true},
		{"slash form of a deeper dir", []string{`/a/tmp`}, "a/tmp/x", false, true},
		{"slash form at the root too", []string{`/tmp`}, "tmp", false, true},
		{"anchored end on a directory", []string{`^tmp$`}, "tmp/deep/file", false, true},
		{"anchored end not a prefix", []string{`^tmp$`}, "tmpfile", false, false},
		{"whole match, not a search", []string{`gz`}, "a.gz", false, false},
		{"newline in name", []string{`.*\.gz`}, "a\nb.gz", false, true},
		{"invalid utf-8", []string{`.*\.gz`}, "\xff\xfe.gz", false, true},
		{"alternation is whole too", []string{`a|b.*`}, "xa", false, false},
		{"root never excluded", []string{`.*`}, ".", true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(tc.exprs)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, got := f.Match(tc.path, tc.dir); got != tc.want {
				t.Fatalf("Match(%q, dir=%v) = %v, want %v", tc.path, tc.dir, got, tc.want)
			}
		})
	}
}

func TestMatchNamesExpressionAndForm(t *testing.T) {
	f, err := New([]string{`(.*)\.svn`, `(.*)\.gz`, `^info/*`, `/a/b`})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path      string
		wantIndex int
		wantForm  string
	}{
		{"info/a.gz", 2, "info"},
		{"logs/a.gz", 1, "logs/a.gz"},
		{"a/b", 3, "/a/b"},
		{"x/.svn/entries", 0, "x/.svn"},
	}
	for _, tc := range cases {
		i, form, ok := f.Match(tc.path, false)
		if !ok || i != tc.wantIndex || form != tc.wantForm {
			t.Errorf("Match(%q) = %d %q %v, want %d %q", tc.path, i, form, ok, tc.wantIndex, tc.wantForm)
		}
	}
}

func TestNewRejectsBadExpression(t *testing.T) {
	_, err := New([]string{`ok`, `(unclosed`})
	if err == nil || !strings.Contains(err.Error(), `(unclosed`) {
		t.Fatalf("want error naming the expression, got %v", err)
	}
}

func FuzzExcluded(f *testing.F) {
	f.Add(`(.*)\.gz`, "a/b.gz")
	f.Add(`^info/*`, "info")
	f.Add(`[`, "x")
	f.Fuzz(func(t *testing.T, expr, path string) {
		flt, err := New([]string{expr})
		if err != nil {
			return
		}
		// A path below an excluded directory must be excluded too.
		if flt.ExcludedAs(path, true) && !flt.Excluded(path+"/child") {
			t.Fatalf("%q excluded but %q/child is not", path, path)
		}
		// A directory is excluded whenever the same name as a file is.
		if flt.Excluded(path) && !flt.ExcludedAs(path, true) {
			t.Fatalf("%q excluded as a file but not as a directory", path)
		}
	})
}
