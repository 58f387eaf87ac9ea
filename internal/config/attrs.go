package config

// Attributes: the parser's readers of one attribute each (booleans, counts,
// ports, durations, regular expressions), which record the first error
// and the warnings.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sersyncd/sersyncd/internal/filter"
)

func (p *parser) fail(n *node, attr, value, msg string) {
	if p.err == nil {
		p.err = &Error{File: p.file, Line: n.line, Element: n.name, Attr: attr, Value: value, Msg: msg}
	}
}

func (p *parser) warn(element, text string) {
	p.cfg.Warnings = append(p.cfg.Warnings, oneLine.Replace(fmt.Sprintf("%s: <%s>: %s", p.file, element, text)))
}

func (p *parser) boolAttr(n *node, attr string, def bool) bool {
	v, ok := n.attr(attr)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true
	case "false":
		return false
	}
	p.fail(n, attr, v, `must be "true" or "false"`)
	return def
}

func (p *parser) posInt(n *node, attr, v string) int {
	i, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || i <= 0 {
		p.fail(n, attr, v, "must be a positive integer")
		return 0
	}
	return i
}

func (p *parser) port(n *node, attr string) int {
	v, _ := n.attr(attr)
	i, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || i < 1 || i > maxPort {
		p.fail(n, attr, v, "must be a port number in 1..65535")
		return 0
	}
	return i
}

// minutes reads a sersync minute count, then lets the sersyncd-only
// attribute interval (a Go duration) override it for finer control.
func (p *parser) minutes(n *node, attr string, def time.Duration) time.Duration {
	d := def
	if v, ok := n.attr(attr); ok {
		d = time.Duration(p.posInt(n, attr, v)) * time.Minute
	}
	d = p.duration(n, "interval", d)
	// The scheduler counts in whole seconds: 500ms would silently run
	// every second, 1.5s every 1.
	if v, ok := n.attr("interval"); ok && d > 0 && (d < time.Second || d%time.Second != 0) {
		p.fail(n, "interval", v, "must be a whole number of seconds, at least 1s")
	}
	return d
}

func (p *parser) duration(n *node, attr string, def time.Duration) time.Duration {
	v, ok := n.attr(attr)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		p.fail(n, attr, v, `must be a duration such as "30s" or "2m"`)
		return def
	}
	if d <= 0 {
		p.fail(n, attr, v, "must be positive")
		return def
	}
	return d
}

// regexps collects the expression attributes of n's children, compiling them
// now so a typo fails at start-up rather than silently filtering nothing.
func (p *parser) regexps(n *node, child string) []string {
	out, _ := p.regexpLines(n, child)
	return out
}

// regexpLines is regexps with the line of each expression.
func (p *parser) regexpLines(n *node, child string) (out []string, lines []int) {
	for _, k := range n.children(child) {
		v, _ := k.attr("expression")
		if v == "" {
			p.fail(k, "expression", v, "is empty")
			continue
		}
		if _, err := filter.Compile(v); err != nil {
			p.fail(k, "expression", v, "is not a valid regular expression (Go RE2 syntax: no backreferences or lookaround): "+err.Error())
			continue
		}
		out = append(out, v)
		lines = append(lines, k.line)
	}
	return out, lines
}
