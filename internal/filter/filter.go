// Package filter decides which paths sersyncd leaves alone: sersync's
// <filter><exclude expression> regular expressions, with sersync's meaning.
//
// sersync (Inotify.cpp) tests an expression with boost::regex_match, which
// succeeds only when the expression matches the WHOLE string, and it builds
// that string three ways:
//
//   - an event in the watched root: the bare name, "info"
//     (Inotify::FilterExclude, "pre = offset->name");
//   - an event deeper down: "/" + the path below the root, "/a/b.gz"
//     (the watch's path minus the root, which keeps its leading slash);
//   - a directory found when the watches are first set: the path below the
//     root with a trailing slash, "static/css/" (Inotify::AddWatch); such a
//     directory gets no watch, so nothing below it is ever seen.
//
// An expression excludes a path when it matches the whole of any of those
// forms of the path or of one of its parent directories, so "(.*)\.gz"
// excludes "a.gz" and "logs/a.gz" but not "a.gzip", and "^info/*" excludes
// "info" and all below it but not "information.txt". Every form is tried at
// every depth: sersync's choice of form depended on when a directory
// appeared (at start or later), and a user's expression was written for
// whichever form they saw work.
package filter

import (
	"fmt"
	"iter"
	"regexp"
	"strings"
)

// Filter is immutable after New and safe for concurrent use. It holds
// sersync's expressions and, optionally, rules in rsync's syntax (rules.go):
// a path is left alone when either excludes it.
type Filter struct {
	excludes []*regexp.Regexp
	rules    *Rules
}

// Compile compiles expr for a whole-string match, as boost::regex_match
// does; '.' matches a newline too, as in boost's default Perl syntax (a file
// name may hold one).
func Compile(expr string) (*regexp.Regexp, error) {
	// Alone first: "a)|(b" would compile once wrapped, meaning something else.
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?s:` + expr + `)$`)
}

// New compiles the expressions; the error names the one that does not compile.
func New(expressions []string) (*Filter, error) { return NewWithRules(expressions, nil) }

// NewWithRules is New with rsync-style rules as well (nil: none).
func NewWithRules(expressions []string, rules *Rules) (*Filter, error) {
	f := &Filter{rules: rules}
	for _, expr := range expressions {
		re, err := Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("compile exclude expression %q: %w", expr, err)
		}
		f.excludes = append(f.excludes, re)
	}
	return f, nil
}

// Excluded reports whether rel (relative to the root, '/'-separated, no
// leading slash) or one of its parent directories is excluded. rel itself is
// taken for a file; see ExcludedAs. A nil Filter excludes nothing.
func (f *Filter) Excluded(rel string) bool { return f.ExcludedAs(rel, false) }

// ExcludedAs is Excluded where isDir says whether rel is a directory, which
// sersync also matched with a trailing slash and rsync rules may single out.
func (f *Filter) ExcludedAs(rel string, isDir bool) bool {
	if _, _, ok := f.Match(rel, isDir); ok {
		return true
	}
	return f != nil && f.rules.Excluded(rel, isDir)
}

// Rules are the rsync-style rules, nil when there are none.
func (f *Filter) Rules() *Rules {
	if f == nil {
		return nil
	}
	return f.rules
}

// HasExpressions reports whether there are sersync expressions, which rsync
// cannot be given as rules.
func (f *Filter) HasExpressions() bool { return f != nil && len(f.excludes) > 0 }

// Match reports which of sersync's expressions (its index in New's list)
// excludes rel, and the form of rel or of its parent that it matched. isDir
// says rel is a directory (its parents always are). The rsync rules are not
// consulted: see Rules().Match.
func (f *Filter) Match(rel string, isDir bool) (index int, form string, ok bool) {
	if f == nil || len(f.excludes) == 0 || rel == "" || rel == "." {
		return 0, "", false
	}
	// Parents first: a path below an excluded directory is excluded by it,
	// and that is the answer a user checking a path wants to see. Every form
	// of every prefix is a slice of one string: this runs for every event.
	full := "/" + rel + "/"
	for end, last := range prefixEnds(rel) {
		// full[1:end+1] is the prefix, full[:end+1] with its leading
		// slash, full[1:end+2] with its trailing one.
		forms := [3]string{full[1 : end+1], full[:end+1], full[1 : end+2]}
		n := 2
		if !last || isDir {
			n = 3
		}
		for index, re := range f.excludes {
			for _, form := range forms[:n] {
				if re.MatchString(form) {
					return index, form, true
				}
			}
		}
	}
	return 0, "", false
}

// prefixEnds yields where each leading run of whole elements of rel ends
// ("a", "a/b", "a/b/c" for "a/b/c"), parents first, and whether it is rel
// itself: a path below an excluded directory is excluded by it.
func prefixEnds(rel string) iter.Seq2[int, bool] {
	return func(yield func(int, bool) bool) {
		for end := 0; end < len(rel); end++ {
			i := strings.IndexByte(rel[end:], '/')
			if i < 0 {
				yield(len(rel), true)
				return
			}
			end += i
			if !yield(end, false) {
				return
			}
		}
	}
}

// Empty reports whether the filter excludes nothing.
func (f *Filter) Empty() bool { return !f.HasExpressions() && f.Rules().Empty() }
