package config

// The <rsync> section: its options, and the checks that keep the user's
// commonParams and ssh command from breaking the command line sersyncd builds.

import (
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-shellwords"
)

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
