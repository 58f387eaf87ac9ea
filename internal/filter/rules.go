package filter

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Rules are include/exclude rules in rsync's filter syntax ("- *.tmp",
// "+ keep/**", "- *"), read from a file: lsyncd users keep their excludes
// this way. A path is pushed iff rsync, walking the tree with these rules,
// would transfer it: the first rule that matches decides, no match includes,
// and an excluded directory hides everything below it. The matching follows
// rsync's exclude.c (rule_matches) and wildmatch.c; a test compares it with
// rsync itself.
type Rules struct {
	File  string
	rules []rule
}

type rule struct {
	include  bool
	text     string // as written, for check --path
	line     int
	pattern  string // without a leading '/' and a trailing '/'
	anchored bool   // a leading '/': matched from the root
	dirOnly  bool   // a trailing '/'
	wild     bool   // has * ? [
	wild2    bool   // has **
	wild2Pre bool   // starts with **
	wild3Suf bool   // ends with /***: also matches the directory itself
	slashes  int    // '/' in the pattern as rsync counts them
	re       *regexp.Regexp
}

// LoadRules reads a filter file. Only the rules that decide what is
// transferred are accepted ("+"/"-", "include"/"exclude", comments and blank
// lines); merge files, list clearing and modifiers are refused with the
// line, since a rule silently ignored would push or hide files.
func LoadRules(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read filter file: %w", err)
	}
	return ParseRules(path, data)
}

// ParseRules parses a filter file's contents; name is used in errors.
func ParseRules(name string, data []byte) (*Rules, error) {
	rs := &Rules{File: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSuffix(sc.Text(), "\r")
		// rsync skips blank lines and those starting with ';' or '#'; it
		// keeps trailing spaces as part of a pattern.
		if strings.TrimSpace(line) == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		r, err := parseRule(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q: %s", name, n, line, err)
		}
		r.line = n
		rs.rules = append(rs.rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read filter file %s: %w", name, err)
	}
	return rs, nil
}

func parseRule(line string) (rule, error) {
	r := rule{text: line}
	var pat string
	switch {
	case strings.HasPrefix(line, "+ "), strings.HasPrefix(line, "- "):
		r.include, pat = line[0] == '+', line[2:]
	case strings.HasPrefix(line, "include "), strings.HasPrefix(line, "exclude "):
		r.include, pat = line[0] == 'i', line[len("include "):]
	case strings.HasPrefix(line, "+"), strings.HasPrefix(line, "-"):
		return r, fmt.Errorf("rule modifiers (%q) are not supported; write \"+ PATTERN\" or \"- PATTERN\"", strings.Fields(line)[0])
	default:
		return r, fmt.Errorf("not an include or exclude rule; only \"+ PATTERN\", \"- PATTERN\", \"include PATTERN\" and \"exclude PATTERN\" are supported")
	}
	if pat == "" {
		return r, fmt.Errorf("empty pattern")
	}
	if strings.HasSuffix(pat, "/") && pat != "/" {
		r.dirOnly = true
		pat = strings.TrimSuffix(pat, "/")
	}
	for _, c := range pat {
		if c == '/' {
			r.slashes++
		}
	}
	r.wild = strings.ContainsAny(pat, "*?[")
	r.wild2 = strings.Contains(pat, "**")
	r.wild2Pre = strings.HasPrefix(pat, "**")
	r.wild3Suf = strings.HasSuffix(pat, "/***")
	if strings.HasPrefix(pat, "/") {
		r.anchored = true
		pat = pat[1:]
	}
	r.pattern = pat
	if r.wild {
		re, err := wildRegexp(pat)
		if err != nil {
			return r, err
		}
		r.re = re
	}
	return r, nil
}

// wildRegexp translates rsync's wildmatch: "*" and "?" never match '/', "**"
// (and "***") match anything, a class never matches '/', '\' escapes.
func wildRegexp(pat string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch c {
		case '\\':
			if i+1 < len(pat) {
				i++
				b.WriteString(regexp.QuoteMeta(pat[i : i+1]))
			} else {
				b.WriteString(`\\`)
			}
		case '?':
			b.WriteString(`[^/]`)
		case '*':
			if i+1 < len(pat) && pat[i+1] == '*' {
				for i+1 < len(pat) && pat[i+1] == '*' {
					i++
				}
				b.WriteString(`.*`)
			} else {
				b.WriteString(`[^/]*`)
			}
		case '[':
			class, n, ok := wildClass(pat[i:])
			if !ok {
				return nil, fmt.Errorf("unclosed character class")
			}
			b.WriteString(class)
			i += n - 1
		default:
			b.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		}
	}
	b.WriteString(`)$`)
	return regexp.Compile(b.String())
}

// wildClass translates the class at the start of s ("[a-z]", "[!x]",
// "[]x]", "[[:digit:]]") and returns how many bytes it took. A class never
// matches '/' in wildmatch.
func wildClass(s string) (string, int, bool) {
	i := 1
	neg := false
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		neg = true
		i++
	}
	var members strings.Builder
	for first := true; i < len(s); i++ {
		c := s[i]
		if c == ']' && !first {
			m := members.String()
			switch {
			case neg:
				return "[^/" + m + "]", i + 1, true
			case m == "":
				return `[^\x00-\x{10FFFF}]`, i + 1, true // only '/': matches nothing
			default:
				return "[" + m + "]", i + 1, true
			}
		}
		first = false
		switch {
		case c == '[' && i+1 < len(s) && s[i+1] == ':':
			end := strings.Index(s[i+2:], ":]")
			if end < 0 {
				return "", 0, false
			}
			members.WriteString(s[i : i+2+end+2]) // "[:alpha:]", Go has the same names
			i += 2 + end + 1
		case c == '\\' && i+1 < len(s):
			i++
			members.WriteString(classByte(s[i]))
		case c == '-' && members.Len() > 0 && i+1 < len(s) && s[i+1] != ']':
			members.WriteByte('-') // a range
		case c == '/':
			// never matches
		default:
			members.WriteString(classByte(c))
		}
	}
	return "", 0, false
}

func classByte(c byte) string {
	if strings.IndexByte(`\]-^[`, c) >= 0 {
		return `\` + string(c)
	}
	return string(c)
}

// Excluded reports whether rel (relative to the root, no leading slash) or
// one of its parent directories is excluded by the rules; isDir says rel is a
// directory. A nil Rules excludes nothing.
func (rs *Rules) Excluded(rel string, isDir bool) bool {
	_, ok := rs.Match(rel, isDir)
	return ok
}

// Match is Excluded with the rule that decided, as "FILE:LINE: RULE".
func (rs *Rules) Match(rel string, isDir bool) (string, bool) {
	if rs == nil || len(rs.rules) == 0 || rel == "" || rel == "." {
		return "", false
	}
	for end, last := range prefixEnds(rel) {
		if r := rs.decide(rel[:end], !last || isDir); r != nil && !r.include {
			return fmt.Sprintf("%s:%d: %s", rs.File, r.line, r.text), true
		}
	}
	return "", false
}

// decide is the first rule matching name, as rsync's check_filter.
func (rs *Rules) decide(name string, isDir bool) *rule {
	for i := range rs.rules {
		if rs.rules[i].matches(name, isDir) {
			return &rs.rules[i]
		}
	}
	return nil
}

// matches is rsync's rule_matches for a name relative to the transfer root.
func (r *rule) matches(name string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	s := name
	if r.slashes == 0 && !r.wild2 {
		// No slash and no "**": only the last element is matched.
		if i := strings.LastIndexByte(s, '/'); i >= 0 {
			s = s[i+1:]
		}
	} else if r.wild2Pre {
		// Lets "**/" match at the start.
		s = "/" + s
	}
	if isDir && r.wild3Suf {
		s += "/" // "dir/***" matches "dir" itself
	}
	if !r.wild {
		if r.anchored {
			return s == r.pattern
		}
		// A literal matches the whole name or its end at an element.
		return s == r.pattern || strings.HasSuffix(s, "/"+r.pattern)
	}
	switch {
	case !r.anchored && r.slashes > 0 && !r.wild2:
		// The last slashes+1 elements.
		cut := len(s)
		for n := r.slashes + 1; n > 0 && cut >= 0; n-- {
			cut = strings.LastIndexByte(s[:max(cut, 0)], '/')
		}
		return r.re.MatchString(s[cut+1:])
	case !r.anchored && !r.wild2Pre && r.wild2:
		// After any slash.
		if r.re.MatchString(s) {
			return true
		}
		for i := 0; i < len(s); i++ {
			if s[i] == '/' && r.re.MatchString(s[i+1:]) {
				return true
			}
		}
		return false
	default:
		return r.re.MatchString(s)
	}
}

// NULList is the rules as rsync reads them with --from0 from a merge file on
// stdin ("--filter=merge -"): the very rules this process decided with.
func (rs *Rules) NULList() []byte {
	if rs == nil {
		return nil
	}
	var b bytes.Buffer
	for _, r := range rs.rules {
		b.WriteString(r.text)
		b.WriteByte(0)
	}
	return b.Bytes()
}

// Empty reports whether there are no rules.
func (rs *Rules) Empty() bool { return rs == nil || len(rs.rules) == 0 }
