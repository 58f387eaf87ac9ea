package config

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-shellwords"
	"github.com/sersyncd/sersyncd/internal/filter"
	"golang.org/x/net/html/charset"
)

// stockEvents are the <inotify> switches of the stock confxml.xml, used when
// the file has no <inotify> at all.
var stockEvents = Events{Delete: true, CreateFolder: true, CloseWrite: true, MoveFrom: true, MoveTo: true}

// node is a parsed element; a small tree keeps line numbers, which
// xml.Unmarshal would lose.
type node struct {
	name  string
	attrs []xml.Attr
	line  int
	kids  []*node
}

// attr is an attribute of n; a missing element (nil) has none.
func (n *node) attr(name string) (string, bool) {
	if n == nil {
		return "", false
	}
	for _, a := range n.attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (n *node) children(name string) []*node {
	var out []*node
	for _, k := range n.kids {
		if k.name == name {
			out = append(out, k)
		}
	}
	return out
}

func readTree(file string, data []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.CharsetReader = charset.NewReaderLabel
	if utf8.Valid(data) {
		// sersync used the bytes of the file as they are, whatever the
		// declaration: its stock file says ISO-8859-1, and a path written
		// into it in UTF-8 ("/data/中文") worked. Decoding such a file as
		// Latin-1 would make that path mojibake; a file really in Latin-1
		// with non-ASCII text is not valid UTF-8, and is decoded as declared.
		d.CharsetReader = func(label string, input io.Reader) (io.Reader, error) {
			if enc, _ := charset.Lookup(label); enc == nil {
				return nil, fmt.Errorf("unsupported charset: %q", label)
			}
			return input, nil
		}
	}
	var root *node
	var stack []*node
	for {
		// The end of the previous token is where the next one starts.
		line, _ := d.InputPos()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, &Error{File: file, Line: se.Line, Msg: "malformed XML: " + se.Msg}
			}
			l, _ := d.InputPos()
			return nil, &Error{File: file, Line: l, Msg: "malformed XML: " + err.Error()}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &node{name: t.Name.Local, attrs: t.Attr, line: line}
			if len(stack) == 0 {
				if root != nil {
					return nil, &Error{File: file, Line: line, Element: n.name, Msg: "malformed XML: more than one root element"}
				}
				if n.name != "head" {
					return nil, &Error{File: file, Line: line, Element: n.name, Msg: "root element must be <head>"}
				}
				root = n
			} else {
				parent := stack[len(stack)-1]
				parent.kids = append(parent.kids, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if root == nil {
		return nil, &Error{File: file, Msg: "no root element; expected <head>"}
	}
	return root, nil
}

// parser keeps only the first error so the section code can read straight
// through without checking after every attribute.
type parser struct {
	file string
	cfg  *Config
	pos  positions
	err  *Error
	// remotes holds, per source, the <remote> nodes parallel to its
	// Remotes, for error lines.
	remotes [][]*node
}

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

func parse(name string, data []byte) (*Config, positions, error) {
	root, err := readTree(name, data)
	if err != nil {
		return nil, positions{}, err
	}
	p := &parser{file: name, cfg: &Config{
		File:    name,
		Events:  stockEvents,
		Rsync:   Rsync{CommonParams: []string{defaultCommonParams}, SSH: SSH{Command: DefaultSSHCommand}},
		FailLog: FailLog{Interval: DefaultFailLogEvery},
		Crontab: Crontab{Interval: DefaultCrontabEvery},
		Daemon:  Daemon{Settle: DefaultSettle, MaxHold: DefaultMaxHold, BatchMax: DefaultBatchMax, BackoffMax: DefaultBackoffMax, HealthLag: DefaultHealthLag, Standby: DefaultStandby},
	}}
	p.head(root)
	if p.err != nil {
		return nil, positions{}, p.err
	}
	return p.cfg, p.pos, nil
}

func (p *parser) head(root *node) {
	c := p.cfg
	var sersync, daemon *node
	for _, n := range root.kids {
		switch n.name {
		case "host":
			c.Host.IP, _ = n.attr("hostip")
			if _, ok := n.attr("port"); ok {
				c.Host.Port = p.port(n, "port")
			}
		case "debug":
			c.Debug = p.boolAttr(n, "start", false)
		case "fileSystem":
			c.XFS = p.boolAttr(n, "xfs", false)
			if c.XFS {
				p.warn(n.name, "xfs option has no effect in sersyncd")
			}
		case "filter":
			c.Filter = p.filter(n)
		case "inotify":
			c.Events = p.events(n)
		case "rsyncFilter":
			p.pos.rsyncFilter = n.line
			c.RsyncRules = p.rsyncFilter(n)
		case "sersync":
			if sersync != nil {
				p.fail(n, "", "", "only one <sersync> section is supported")
			}
			sersync = n
			p.sersync(n)
		case "plugin":
			p.topPlugin(n)
		case "sersyncd":
			p.daemon(n)
			daemon = n
		}
	}
	if sersync == nil {
		p.fail(root, "", "", "has no <sersync> section")
	}
	// The top-level filter may come after <sersync>: a source without its
	// own gets it only now.
	for i := range c.Sources {
		s := &c.Sources[i]
		if !s.OwnFilter {
			s.Filter = c.Filter
		}
		if !s.OwnRules {
			s.RsyncRules, s.rulesLine = c.RsyncRules, p.pos.rsyncFilter
		}
	}
	if len(c.Sources) > 0 {
		c.LocalPath, c.Remotes = c.Sources[0].Path, c.Sources[0].Remotes
	}
	if d := &c.Daemon; d.Standby > 0 && c.Rsync.Timeout > 0 && d.Standby >= c.Rsync.Timeout {
		if v, set := daemon.attr("standby"); set {
			p.fail(daemon, "standby", v, fmt.Sprintf("must be shorter than the rsync <timeout> (%s): rsync would end a waiting standby itself", c.Rsync.Timeout))
		}
		d.Standby = c.Rsync.Timeout / 2
	}
	if !c.Events.Delete {
		for _, w := range c.Rsync.CommonParams {
			if strings.HasPrefix(w, "--del") {
				p.warn("commonParams", fmt.Sprintf("%s deletes on the targets although <delete start=\"false\"> (sersync passed it too); remove it to keep what the source deleted", w))
				break
			}
		}
	}
	if pl := c.Plugin; pl.Enabled && (pl.Name == "command" && c.Command == nil || pl.Name == "socket" && c.Socket == nil) {
		p.warn("plugin", "plugin "+pl.Name+` is enabled but there is no top-level <plugin name="`+pl.Name+`"> section; ignored`)
	}
}

func (p *parser) filter(n *node) Filter {
	f := Filter{Enabled: p.boolAttr(n, "start", false)}
	f.Excludes, f.Lines = p.regexpLines(n, "exclude")
	return f
}

func (p *parser) rsyncFilter(n *node) RsyncRules {
	r := RsyncRules{Enabled: p.boolAttr(n, "start", false)}
	r.File, _ = n.attr("file")
	if r.Enabled && !filepath.IsAbs(r.File) {
		p.fail(n, "file", r.File, "must be an absolute path to a file of rsync filter rules")
	}
	return r
}

func (p *parser) events(n *node) Events {
	// With <inotify> present, only the switches written there are on.
	var e Events
	for _, k := range n.kids {
		var f *bool
		switch k.name {
		case "delete":
			f = &e.Delete
		case "createFolder":
			f = &e.CreateFolder
		case "createFile":
			f = &e.CreateFile
		case "closeWrite":
			f = &e.CloseWrite
		case "moveFrom":
			f = &e.MoveFrom
		case "moveTo":
			f = &e.MoveTo
		case "attrib":
			f = &e.Attrib
		case "modify":
			f = &e.Modify
		default:
			continue
		}
		*f = p.boolAttr(k, "start", false)
	}
	return e
}

func (p *parser) sersync(s *node) {
	c := p.cfg
	for _, n := range s.kids {
		switch n.name {
		case "localpath":
			p.localpath(n)
		case "rsync":
			p.rsync(n)
		case "failLog":
			c.FailLog.Path, _ = n.attr("path")
			c.FailLog.Interval = p.minutes(n, "timeToExecute", DefaultFailLogEvery)
		case "crontab":
			p.crontab(n)
		case "plugin":
			c.Plugin.Enabled = p.boolAttr(n, "start", false)
			c.Plugin.Name, _ = n.attr("name")
			if c.Plugin.Enabled {
				switch c.Plugin.Name {
				case "command", "socket": // run by internal/plugin; see head for a missing section
				case "refreshCDN":
					p.warn(n.name, "plugin refreshCDN is not implemented yet; ignored")
				default:
					p.fail(n, "name", c.Plugin.Name, "is not a known plugin (command, socket or refreshCDN)")
				}
			}
		}
	}
	if len(c.Sources) == 0 {
		p.fail(s, "", "", "has no <localpath watch=...> section")
	}
	p.checkRemotes()
	p.checkSources()
	a, ssh := c.Rsync.Auth, c.Rsync.SSH
	if a.Enabled && ssh.Enabled && p.err == nil {
		p.err = &Error{File: p.file, Line: p.pos.auth, Element: "auth", Attr: "start", Value: "true",
			Msg: `cannot be combined with <ssh start="true">: auth is for rsync daemons, ssh uses its own login`}
	}
}

func (p *parser) localpath(n *node) {
	src := Source{line: n.line}
	w, ok := n.attr("watch")
	switch {
	case !ok:
		p.fail(n, "watch", w, "is missing")
	case w == "":
		p.fail(n, "watch", w, "is empty")
	case strings.ContainsRune(w, 0):
		p.fail(n, "watch", w, "contains a NUL byte")
	case !filepath.IsAbs(w):
		p.fail(n, "watch", w, "is not an absolute path")
	default:
		src.Path = filepath.Clean(w)
	}
	var remotes []*node
	for _, k := range n.kids {
		switch k.name {
		case "remote":
			ip, _ := k.attr("ip")
			name, _ := k.attr("name")
			src.Remotes = append(src.Remotes, Remote{IP: ip, Name: name})
			remotes = append(remotes, k)
		case "filter": // sersyncd-only, ignored by sersync
			if src.OwnFilter {
				p.fail(k, "", "", "a second <filter> in one <localpath>")
			}
			src.Filter, src.OwnFilter = p.filter(k), true
		case "rsyncFilter": // sersyncd-only, ignored by sersync
			if src.OwnRules {
				p.fail(k, "", "", "a second <rsyncFilter> in one <localpath>")
			}
			src.RsyncRules, src.OwnRules, src.rulesLine = p.rsyncFilter(k), true, k.line
		}
	}
	if len(src.Remotes) == 0 {
		p.fail(n, "", "", "has no <remote ip=... name=...> child")
	}
	p.cfg.Sources = append(p.cfg.Sources, src)
	p.remotes = append(p.remotes, remotes)
}

// checkRemotes runs after <rsync> is read because ssh mode allows user@host.
func (p *parser) checkRemotes() {
	for i, s := range p.cfg.Sources {
		for j, r := range s.Remotes {
			n := p.remotes[i][j]
			if msg := badHost(r.IP, p.cfg.Rsync.SSH.Enabled); msg != "" {
				p.fail(n, "ip", r.IP, msg)
			}
			switch {
			case r.Name == "":
				p.fail(n, "name", r.Name, "is empty")
			case strings.HasPrefix(r.Name, "-"):
				p.fail(n, "name", r.Name, "must not start with '-': rsync would take it as an option")
			case strings.ContainsAny(r.Name, "\x00\n\r"):
				p.fail(n, "name", r.Name, "contains a NUL or newline character")
			}
		}
	}
}

// checkSources refuses sources that would overlap: a tree inside another
// (or the same tree twice) would have its changes pushed twice, by two
// watchers to two sets of targets, and two trees pushing to one place on a
// target would each delete the other's files with their full pushes.
func (p *parser) checkSources() {
	srcs := p.cfg.Sources
	for i, s := range srcs {
		for _, o := range srcs[:i] {
			if s.Path == "" || o.Path == "" {
				continue
			}
			n := &node{name: "localpath", line: s.line}
			switch {
			case s.Path == o.Path:
				p.fail(n, "watch", s.Path, fmt.Sprintf("is the same tree as the <localpath> of line %d: give each tree one <localpath>, with all its <remote>s", o.line))
			case within(s.Path, o.Path):
				p.fail(n, "watch", s.Path, fmt.Sprintf("is inside the <localpath watch=%q> of line %d: its changes would be pushed twice, by both; leave it out, or use a filter to split the trees", o.Path, o.line))
			case within(o.Path, s.Path):
				p.fail(n, "watch", s.Path, fmt.Sprintf("holds the <localpath watch=%q> of line %d: its changes would be pushed twice, by both; leave it out, or use a filter to split the trees", o.Path, o.line))
			}
		}
	}
	for i, s := range srcs {
		for j, r := range s.Remotes {
			for oi, o := range srcs[:i] {
				for k, or := range o.Remotes {
					if !p.overlap(r, or) {
						continue
					}
					d, od := p.cfg.Destination(r), p.cfg.Destination(or)
					what := fmt.Sprintf("%s is also a target of <localpath watch=%q> (line %d)", d, o.Path, p.remotes[oi][k].line)
					if d != od {
						what = fmt.Sprintf("%s overlaps %s, a target of <localpath watch=%q> (line %d)", d, od, o.Path, p.remotes[oi][k].line)
					}
					p.fail(p.remotes[i][j], "name", r.Name, what+": both trees would push into the same directory there, and each one's full push would delete what the other pushed; give each tree a module (or a directory) of its own")
				}
			}
		}
	}
}

// overlap reports whether a and b push into the same place: the same host
// (whoever logs in) and one name the other or a directory below it (a
// module "m" holds "m/a"; an ssh path "/b" holds "/b/a"). Different names
// of one host, or one module under two names, are beyond what can be known.
func (p *parser) overlap(a, b Remote) bool {
	host := func(ip string) string {
		if i := strings.LastIndexByte(ip, '@'); i >= 0 {
			ip = ip[i+1:]
		}
		return strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	}
	if host(a.IP) != host(b.IP) {
		return false
	}
	an, bn := path.Clean(a.Name), path.Clean(b.Name)
	return an == bn || within(an, bn) || within(bn, an)
}

func badHost(ip string, ssh bool) string {
	host := ip
	if ssh {
		if i := strings.LastIndexByte(ip, '@'); i >= 0 {
			host = ip[i+1:]
		}
	}
	switch {
	case host == "":
		return "is empty"
	case strings.HasPrefix(ip, "-"):
		return "must not start with '-': rsync would take it as an option"
	case strings.ContainsAny(host, "\x00\n\r\t /@"):
		return "contains whitespace, '/', '@' or a control character"
	case strings.ContainsAny(ip, "\x00\n\r"):
		return "contains a NUL or newline character"
	case strings.Contains(host, ":"):
		h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if a, err := netip.ParseAddr(h); err != nil || !a.Is6() {
			return "contains ':' but is not an IPv6 address"
		}
	}
	return ""
}

func (p *parser) rsync(r *node) {
	rs := &p.cfg.Rsync
	for _, n := range r.kids {
		switch n.name {
		case "commonParams":
			v, _ := n.attr("params")
			rs.CommonParams = p.commonParams(n, v)
		case "auth":
			p.pos.auth = n.line
			rs.Auth.Enabled = p.boolAttr(n, "start", false)
			rs.Auth.Users, _ = n.attr("users")
			rs.Auth.PasswordFile, _ = n.attr("passwordfile")
			if rs.Auth.Enabled && rs.Auth.PasswordFile == "" {
				p.fail(n, "passwordfile", "", `is empty but auth start="true" needs it`)
			}
		case "userDefinedPort":
			rs.Port = 0
			if p.boolAttr(n, "start", false) {
				rs.Port = p.port(n, "port")
			}
		case "timeout":
			rs.Timeout = 0
			if p.boolAttr(n, "start", false) {
				v, _ := n.attr("time")
				rs.Timeout = time.Duration(p.posInt(n, "time", v)) * time.Second
			}
		case "ssh":
			rs.SSH.Enabled = p.boolAttr(n, "start", false)
			if v, ok := n.attr("command"); ok {
				if _, err := splitWords(v); err != "" {
					p.fail(n, "command", v, err)
				} else if strings.TrimSpace(v) == "" {
					p.fail(n, "command", v, "is empty")
				}
				rs.SSH.Command = strings.TrimSpace(v)
			}
		}
	}
}

func splitWords(s string) ([]string, string) {
	sp := shellwords.NewParser()
	sp.ParseEnv = false
	sp.ParseBacktick = false
	words, err := sp.Parse(s)
	if err != nil {
		return nil, "cannot be split into words (unbalanced quotes?)"
	}
	if sp.Position >= 0 {
		return nil, "contains a shell operator (; & | < >); sersyncd runs no shell"
	}
	return words, ""
}

// reservedParams are options sersyncd sets itself, or that would turn the
// client into something else; a user-supplied copy would break its command line.
var reservedParams = []string{"--files-from", "--exclude-from", "--include-from", "--from0", "--daemon", "--server", "--sender"}

func (p *parser) commonParams(n *node, v string) []string {
	words, msg := splitWords(v)
	if msg != "" {
		p.fail(n, "params", v, msg)
		return nil
	}
	if len(words) == 0 {
		p.fail(n, "params", v, "has no options; use at least -artuz")
		return nil
	}
	for _, w := range words {
		if msg := badParam(w); msg != "" {
			p.fail(n, "params", v, strconv.Quote(w)+" "+msg)
			return nil
		}
	}
	return words
}

func badParam(w string) string {
	const rsh = `sets the remote shell; use <ssh start="true" command="..."> instead`
	const reserved = "is not allowed: sersyncd sets it itself"
	if w == "-" || w == "--" || !strings.HasPrefix(w, "-") {
		return "is not an option (write --option=value as one word): rsync would take it as a source path"
	}
	if strings.HasPrefix(w, "--rsh") {
		return rsh
	}
	for _, r := range reservedParams {
		if strings.HasPrefix(w, r) {
			return reserved
		}
	}
	if strings.HasPrefix(w, "--") {
		return ""
	}
	// A short-option cluster such as -artuz: scan letters until one that
	// takes the rest of the word as its value.
	for _, ch := range w[1:] {
		switch ch {
		case 'e':
			return rsh
		case '0':
			return reserved
		case 'B', 'f', 'T', 'M', '@':
			return ""
		}
	}
	return ""
}

func (p *parser) crontab(n *node) {
	ct := &p.cfg.Crontab
	ct.Enabled = p.boolAttr(n, "start", false)
	ct.Interval = p.minutes(n, "schedule", DefaultCrontabEvery)
	for _, f := range n.children("crontabfilter") {
		ct.FilterEnabled = p.boolAttr(f, "start", false)
		ct.FilterExcludes = nil
		for _, k := range f.children("exclude") {
			v, _ := k.attr("expression")
			switch {
			case v == "":
				p.fail(k, "expression", v, "is empty")
			case strings.ContainsAny(v, "\x00\n\r"):
				p.fail(k, "expression", v, "contains a NUL or newline character")
			}
			ct.FilterExcludes = append(ct.FilterExcludes, v)
		}
	}
}

func (p *parser) topPlugin(n *node) {
	name, _ := n.attr("name")
	switch name {
	case "command":
		cp := &CommandPlugin{}
		for _, k := range n.kids {
			switch k.name {
			case "param":
				cp.Prefix, _ = k.attr("prefix")
				cp.Suffix, _ = k.attr("suffix")
				cp.IgnoreError = p.boolAttr(k, "ignoreError", false)
			case "filter":
				cp.FilterEnabled = p.boolAttr(k, "start", false)
				cp.Includes = p.regexps(k, "include")
			}
		}
		p.cfg.Command = cp
	case "socket":
		sp := &SocketPlugin{}
		for _, l := range n.children("localpath") {
			sp.LocalPath, _ = l.attr("watch")
			for _, h := range l.children("deshost") {
				ip, _ := h.attr("ip")
				sp.Hosts = append(sp.Hosts, HostPort{IP: ip, Port: p.port(h, "port")})
			}
		}
		p.cfg.Socket = sp
	case "refreshCDN":
		rp := &RefreshCDNPlugin{}
		for _, l := range n.children("localpath") {
			rp.LocalPath, _ = l.attr("watch")
			for _, k := range l.kids {
				switch k.name {
				case "cdninfo":
					rp.Domain, _ = k.attr("domainname")
					rp.Port = 0
					if v, ok := k.attr("port"); ok && v != "" {
						rp.Port = p.port(k, "port")
					}
					rp.User, _ = k.attr("username")
					rp.Password, _ = k.attr("passwd")
				case "sendurl":
					rp.SendURL, _ = k.attr("base")
				case "regexurl":
					rp.Regex = p.boolAttr(k, "regex", false)
					rp.RegexURL, _ = k.attr("match")
					if rp.Regex {
						if _, err := regexp.Compile(rp.RegexURL); err != nil {
							p.fail(k, "match", rp.RegexURL, "is not a valid regular expression: "+err.Error())
						}
					}
				}
			}
		}
		p.cfg.RefreshCDN = rp
	}
}

func (p *parser) daemon(n *node) {
	d := &p.cfg.Daemon
	d.Settle = p.duration(n, "settle", DefaultSettle)
	d.MaxHold = p.duration(n, "maxHold", DefaultMaxHold)
	d.BackoffMax = p.duration(n, "backoffMax", DefaultBackoffMax)
	d.HealthLag = p.duration(n, "healthLag", DefaultHealthLag)
	if v, ok := n.attr("standby"); ok && strings.TrimSpace(v) == "0" {
		d.Standby = 0 // no rsync kept ready
	} else {
		d.Standby = p.duration(n, "standby", DefaultStandby)
	}
	if v, ok := n.attr("verify"); ok && strings.TrimSpace(v) != "0" {
		d.Verify = p.duration(n, "verify", 0)
		// The scheduler counts in whole seconds, as for interval.
		if d.Verify > 0 && (d.Verify < time.Second || d.Verify%time.Second != 0) {
			p.fail(n, "verify", v, "must be a whole number of seconds, at least 1s (0 turns it off)")
		}
	}
	d.VerifyChecksum = p.boolAttr(n, "verifyChecksum", false)
	d.VerifyRepair = p.boolAttr(n, "verifyRepair", false)
	d.BatchMax = DefaultBatchMax
	if v, ok := n.attr("batchMax"); ok {
		d.BatchMax = p.posInt(n, "batchMax", v)
	}
	if d.MaxHold < d.Settle {
		v, _ := n.attr("maxHold")
		p.fail(n, "maxHold", v, fmt.Sprintf("is shorter than settle (%s): a path would be queued before it could settle", d.Settle))
	}
	d.DB, _ = n.attr("db")
	d.Metrics, _ = n.attr("metrics")
	d.LogFile, _ = n.attr("logFile")
	d.PidFile, _ = n.attr("pidFile")
	p.pos.daemon = n.line
	if v, ok := n.attr("rsync"); ok {
		switch {
		case strings.TrimSpace(v) == "":
			p.fail(n, "rsync", v, "is empty; leave it out to use rsync from PATH")
		case strings.ContainsAny(v, "\x00\n\r"):
			p.fail(n, "rsync", v, "contains a NUL or newline character")
		case !filepath.IsAbs(v):
			p.fail(n, "rsync", v, "is not an absolute path")
		default:
			d.Rsync = filepath.Clean(v)
		}
	}
}
