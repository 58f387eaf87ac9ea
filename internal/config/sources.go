package config

// Sources and remotes: each <localpath> with its <remote>s, and the checks
// that no host is malformed and no two trees overlap, here or on a target.

import (
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"strings"
)

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
