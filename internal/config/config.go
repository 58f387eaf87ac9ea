// Package config reads sersync 2.5's confxml.xml, unchanged, into a validated
// Config for sersyncd. A few optional sersyncd-only attributes and the
// <sersyncd/> element extend the format without breaking sersync itself.
package config

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/sersyncd/sersyncd/internal/filter"
)

// Config is the parsed and validated confxml.xml.
type Config struct {
	File       string     // path the config was loaded from (as given)
	Host       Host       // <host hostip port>
	Debug      bool       // <debug start>
	XFS        bool       // <fileSystem xfs>
	Filter     Filter     // <filter start> with <exclude expression> children: regular expressions
	RsyncRules RsyncRules // sersyncd-only <rsyncFilter start file>: rules in rsync's syntax
	Events     Events     // <inotify> switches
	// Sources are the <sersync><localpath> sections, in file order: the
	// trees watched, each with its own targets.
	Sources []Source
	// LocalPath and Remotes are the first source's Path and Remotes: the
	// tree sersync itself watched (it ignored every later <localpath>),
	// which the plugins follow.
	LocalPath  string
	Remotes    []Remote
	Rsync      Rsync             // <sersync><rsync>
	FailLog    FailLog           // <sersync><failLog>
	Crontab    Crontab           // <sersync><crontab>
	Plugin     SersyncPlugin     // <sersync><plugin start name>
	Command    *CommandPlugin    // top-level <plugin name="command">, nil if absent
	Socket     *SocketPlugin     // top-level <plugin name="socket">, nil if absent
	RefreshCDN *RefreshCDNPlugin // top-level <plugin name="refreshCDN">, nil if absent
	Daemon     Daemon            // sersyncd-only <sersyncd .../> under <head>; defaults when absent
	Warnings   []string          // "FILE: <element>: text" for enabled sections sersyncd ignores
}

// Host is <host hostip port>; sersync read and printed it, and used it for
// nothing else (Initialize::XmlParse).
type Host struct {
	IP   string
	Port int
}

// Filter is <filter start>; Excludes are regular expression sources, in
// order, matched as sersync matched them (see internal/filter).
type Filter struct {
	Enabled  bool
	Excludes []string
	Lines    []int // Lines[i]: the line of Excludes[i] in the file
}

// RsyncRules is the sersyncd-only <rsyncFilter start file>: include and
// exclude rules in rsync's filter syntax, read from File by Load.
type RsyncRules struct {
	Enabled bool
	File    string
	Rules   *filter.Rules // nil until Load has read File
}

// Source is one <localpath watch>: a tree and the targets it is pushed
// to. Filter and RsyncRules are the ones that apply to it: its own
// sersyncd-only <filter> and <rsyncFilter> children when it has them (sersync
// ignores them), the top-level ones otherwise.
type Source struct {
	Path       string   // absolute, cleaned, no trailing slash
	Remotes    []Remote // <remote ip name> children, in file order
	Filter     Filter
	RsyncRules RsyncRules
	OwnFilter  bool // Filter is the <localpath>'s own
	OwnRules   bool // RsyncRules is the <localpath>'s own
	line       int  // of the <localpath>
	rulesLine  int  // of the <rsyncFilter> RsyncRules came from
}

// Events are the <inotify> switches.
type Events struct {
	Delete, CreateFolder, CreateFile, CloseWrite, MoveFrom, MoveTo, Attrib, Modify bool
}

// Remote is one <remote ip name>.
type Remote struct {
	IP, Name string
}

// Rsync is <sersync><rsync>.
type Rsync struct {
	CommonParams []string      // <commonParams params>, shell-split; ["-artuz"] when absent
	Auth         Auth          // <auth start users passwordfile>
	Port         int           // <userDefinedPort port> when start="true", else 0
	Timeout      time.Duration // <timeout time> seconds when start="true", else 0 (DefaultRsyncTimeout)
	SSH          SSH           // <ssh start command>
}

// Auth is <auth start users passwordfile>.
type Auth struct {
	Enabled             bool
	Users, PasswordFile string
}

// SSH is <ssh start>; Command is the sersyncd-only attribute command (default "ssh").
type SSH struct {
	Enabled bool
	Command string
}

// FailLog is <failLog path timeToExecute>.
type FailLog struct {
	Path     string
	Interval time.Duration // timeToExecute minutes (default 60); attribute interval overrides
}

// Crontab is <crontab start schedule> with its <crontabfilter>.
type Crontab struct {
	Enabled        bool
	Interval       time.Duration // schedule minutes (default 600); attribute interval overrides
	FilterEnabled  bool          // <crontabfilter start>
	FilterExcludes []string      // rsync patterns such as "*.php", not regular expressions
}

// SersyncPlugin is <sersync><plugin start name>.
type SersyncPlugin struct {
	Enabled bool
	Name    string
}

// CommandPlugin is the top-level <plugin name="command">.
type CommandPlugin struct {
	Prefix, Suffix string
	IgnoreError    bool
	FilterEnabled  bool
	Includes       []string // regular expression sources
}

// SocketPlugin is the top-level <plugin name="socket">.
type SocketPlugin struct {
	LocalPath string
	Hosts     []HostPort
}

// HostPort is one <deshost ip port>.
type HostPort struct {
	IP   string
	Port int
}

// RefreshCDNPlugin is the top-level <plugin name="refreshCDN">.
type RefreshCDNPlugin struct {
	LocalPath, Domain string
	Port              int
	User, Password    string
	SendURL, RegexURL string
	Regex             bool
}

// Daemon holds the sersyncd-only <sersyncd/> settings.
type Daemon struct {
	Settle                        time.Duration // how long a path must be quiet before it is queued
	MaxHold                       time.Duration // a path that never goes quiet is queued after this anyway
	BatchMax                      int
	BackoffMax                    time.Duration
	HealthLag                     time.Duration // /healthz fails when a change waits longer than this
	Standby                       time.Duration // how long a target keeps an rsync started ahead after a push; 0: none
	Verify                        time.Duration // how often the daemon compares every target with the source; 0: never
	VerifyChecksum                bool          // the scheduled verify compares contents, not size and mtime
	VerifyRepair                  bool          // the scheduled verify queues the drifted paths
	DB, Metrics, LogFile, PidFile string        // "" means the caller's default
	// Rsync is the rsync binary every push, replay and check runs: an
	// absolute path; "" means "rsync" from PATH.
	Rsync string
}

// Default values for settings the file may leave out.
const (
	DefaultSettle       = 20 * time.Millisecond
	DefaultMaxHold      = 10 * time.Second
	DefaultBatchMax     = 5000
	DefaultBackoffMax   = 2 * time.Minute
	DefaultHealthLag    = 60 * time.Second
	DefaultStandby      = 10 * time.Second
	DefaultFailLogEvery = 60 * time.Minute
	DefaultCrontabEvery = 600 * time.Minute
	DefaultSSHCommand   = "ssh"
	// DefaultRsyncTimeout is rsync's --timeout when <timeout> is off (Rsync.Timeout 0):
	// a push to a target that stopped answering, hanging forever, would hold
	// its records and a worker forever, silently.
	DefaultRsyncTimeout = 300 * time.Second
	// DefaultRsyncBinary is the rsync run when Daemon.Rsync is "": looked up on PATH.
	DefaultRsyncBinary   = "rsync"
	defaultCommonParams  = "-artuz"
	maxPort              = 65535
	passwordFileModeMask = 0o077
)

// LookPath is replaceable so tests need no rsync binary.
var LookPath = exec.LookPath

// Error is a single-line configuration error.
type Error struct {
	File    string
	Line    int // 0 when unknown
	Element string
	Attr    string
	Value   string
	Msg     string
}

// oneLine keeps every error on one log line whatever the file contains.
var oneLine = strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\r`)

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Element != "" {
		b.WriteByte('<')
		b.WriteString(e.Element)
		if e.Attr != "" {
			b.WriteByte(' ')
			b.WriteString(e.Attr)
			b.WriteByte('=')
			b.WriteString(strconv.Quote(e.Value))
		}
		b.WriteString(">: ")
	}
	b.WriteString(e.Msg)
	return oneLine.Replace(b.String())
}

// Load reads, parses and validates the file, including the checks that need
// the file system (watch directory, password file, rsync binary).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + err.Error()}
	}
	c, pos, perr := parse(path, data)
	if perr != nil {
		return nil, perr
	}
	if err := c.fsCheck(pos); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse parses and validates data without touching the file system; name is
// used in error messages and as Config.File.
func Parse(name string, data []byte) (*Config, error) {
	c, _, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// positions remembers where checked elements were, for Load's later errors.
type positions struct {
	auth, rsyncFilter, daemon int
}

func (c *Config) fsCheck(pos positions) error {
	for _, s := range c.Sources {
		fi, err := os.Stat(s.Path)
		switch {
		case err != nil:
			return &Error{File: c.File, Line: s.line, Element: "localpath", Attr: "watch", Value: s.Path, Msg: statMsg(err)}
		case !fi.IsDir():
			return &Error{File: c.File, Line: s.line, Element: "localpath", Attr: "watch", Value: s.Path, Msg: "is not a directory"}
		}
	}
	if a := c.Rsync.Auth; a.Enabled {
		if err := checkPasswordFile(a.PasswordFile); err != "" {
			return &Error{File: c.File, Line: pos.auth, Element: "auth", Attr: "passwordfile", Value: a.PasswordFile, Msg: err}
		}
	}
	if rf := &c.RsyncRules; rf.Enabled {
		rules, err := filter.LoadRules(rf.File)
		if err != nil {
			return &Error{File: c.File, Line: pos.rsyncFilter, Element: "rsyncFilter", Attr: "file", Value: rf.File, Msg: err.Error()}
		}
		rf.Rules = rules
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if !s.OwnRules {
			s.RsyncRules.Rules = c.RsyncRules.Rules
			continue
		}
		if !s.RsyncRules.Enabled {
			continue
		}
		rules, err := filter.LoadRules(s.RsyncRules.File)
		if err != nil {
			return &Error{File: c.File, Line: s.rulesLine, Element: "rsyncFilter", Attr: "file", Value: s.RsyncRules.File, Msg: err.Error()}
		}
		s.RsyncRules.Rules = rules
	}
	if c.Daemon.Rsync != "" {
		if msg := checkExecutable(c.Daemon.Rsync); msg != "" {
			return &Error{File: c.File, Line: pos.daemon, Element: "sersyncd", Attr: "rsync", Value: c.Daemon.Rsync, Msg: msg}
		}
	} else if _, err := LookPath(DefaultRsyncBinary); err != nil {
		return &Error{File: c.File, Element: "rsync", Msg: "no rsync binary on PATH; install rsync"}
	}
	return nil
}

// checkExecutable says what keeps path from being run as a program.
func checkExecutable(path string) string {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return statMsg(err)
	case !fi.Mode().IsRegular():
		return "is not a regular file"
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Sprintf("is not executable (mode %04o); run chmod +x %s", uint32(fi.Mode().Perm()), path)
	}
	return ""
}

func statMsg(err error) string {
	if os.IsNotExist(err) {
		return "does not exist"
	}
	return "cannot stat: " + err.Error()
}

// checkPasswordFile mirrors the checks rsync makes on --password-file, so a
// bad file fails at start-up instead of on every transfer.
func checkPasswordFile(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return statMsg(err)
	}
	if !fi.Mode().IsRegular() {
		return "is not a regular file"
	}
	if perm := fi.Mode().Perm(); perm&passwordFileModeMask != 0 {
		return fmt.Sprintf("is accessible by group or others (mode %04o); run chmod 600 %s: rsync refuses such files", uint32(perm), path)
	}
	if os.Geteuid() == 0 {
		if uid, ok := fileOwner(fi); ok && uid != 0 {
			return fmt.Sprintf("is owned by uid %d, not root; run chown root %s: rsync refuses such files when run as root", uid, path)
		}
	}
	return ""
}

// SourceOf returns the source whose tree holds path (absolute, cleaned), or
// nil.
func (c *Config) SourceOf(path string) *Source {
	for i := range c.Sources {
		if s := &c.Sources[i]; path == s.Path || within(path, s.Path) {
			return s
		}
	}
	return nil
}

// within reports whether path is below dir (both cleaned, same kind).
func within(path, dir string) bool {
	return dir == "/" && path != "/" || strings.HasPrefix(path, dir+"/")
}

// Excludes are the source's filter expressions when its filter is on.
func (s *Source) Excludes() []string {
	if !s.Filter.Enabled {
		return nil
	}
	return s.Filter.Excludes
}

// Destination returns the rsync destination argument for r.
func (c *Config) Destination(r Remote) string {
	user, host := "", r.IP
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		user, host = host[:i+1], host[i+1:]
	}
	// rsync would read the colons of a bare IPv6 literal as the host separator.
	if h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"); strings.Contains(h, ":") {
		host = "[" + h + "]"
	}
	host = user + host
	if c.Rsync.SSH.Enabled {
		return host + ":" + r.Name
	}
	if c.Rsync.Auth.Enabled && c.Rsync.Auth.Users != "" {
		return c.Rsync.Auth.Users + "@" + host + "::" + r.Name
	}
	return host + "::" + r.Name
}
