package filter

import (
	"strings"
	"testing"
)

func TestExcluded(t *testing.T) {
	stock := []string{`(.*)\.svn`, `(.*)\.gz`, `^info/*`, `^static/*`}
	cases := []struct {
		name  string
		exprs []string
		path  string
		want  bool
	}{
		{"no filter", nil, "a.gz", false},
		{"suffix match", stock, "logs/a.gz", true},
		{"inside excluded dir", stock, "repo/.svn/entries", true},
		{"anchored dir", stock, "info/x", true},
		{"anchored dir only at start", stock, "a/info/x", false},
		{"plain file", stock, "index.html", false},
		{"anchored end on a directory", []string{`^tmp$`}, "tmp/deep/file", true},
		{"anchored end not a prefix", []string{`^tmp$`}, "tmpfile", false},
		{"newline in name", []string{`\.gz$`}, "a\nb.gz", true},
		{"invalid utf-8", []string{`\.gz$`}, "\xff\xfe.gz", true},
		{"root never excluded", []string{`.*`}, ".", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := New(tc.exprs)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Excluded(tc.path); got != tc.want {
				t.Fatalf("Excluded(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
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
		if flt.Excluded(path) && !flt.Excluded(path+"/child") {
			t.Fatalf("%q excluded but %q/child is not", path, path)
		}
	})
}
