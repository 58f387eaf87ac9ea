package config

// Parsing: the sections of confxml.xml (and the sersyncd-only <sersyncd/>)
// into a Config, with the defaults of what a file leaves out.

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// stockEvents are the <inotify> switches of the stock confxml.xml, used when
// the file has no <inotify> at all.
var stockEvents = Events{Delete: true, CreateFolder: true, CloseWrite: true, MoveFrom: true, MoveTo: true}

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
