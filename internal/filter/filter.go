// Package filter decides which paths sersyncd leaves alone: sersync's
// <filter><exclude expression> regular expressions, matched anywhere in the
// path relative to the watched root (sersync's meaning: "(.*)\.gz" excludes
// every path containing ".gz").
package filter

import (
	"fmt"
	"regexp"
	"strings"
)

// Filter is immutable after New and safe for concurrent use.
type Filter struct {
	excludes []*regexp.Regexp
}

// New compiles the expressions; the error names the one that does not compile.
func New(expressions []string) (*Filter, error) {
	f := &Filter{}
	for _, expr := range expressions {
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("compile exclude expression %q: %w", expr, err)
		}
		f.excludes = append(f.excludes, re)
	}
	return f, nil
}

// Excluded reports whether rel (relative to the root, '/'-separated, no
// leading slash) or one of its parent directories is excluded. A nil Filter
// excludes nothing.
func (f *Filter) Excluded(rel string) bool {
	if f == nil || len(f.excludes) == 0 || rel == "" || rel == "." {
		return false
	}
	// Checking every ancestor keeps a path below an excluded directory out
	// even when the expression is anchored at the directory's end ("^tmp$").
	for end := 0; end < len(rel); {
		i := strings.IndexByte(rel[end:], '/')
		if i < 0 {
			end = len(rel)
		} else {
			end += i
		}
		if f.match(rel[:end]) {
			return true
		}
		end++
	}
	return false
}

func (f *Filter) match(p string) bool {
	for _, re := range f.excludes {
		if re.MatchString(p) {
			return true
		}
	}
	return false
}

// Empty reports whether the filter excludes nothing.
func (f *Filter) Empty() bool { return f == nil || len(f.excludes) == 0 }
