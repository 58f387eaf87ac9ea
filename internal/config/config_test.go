package config

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const stockPath = "../../../shared/reference/sersync-2.5.4-confxml.xml"

func readStock(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(stockPath)
	if err != nil {
		t.Skipf("stock sersync confxml.xml not available at %s: %v", stockPath, err)
	}
	return data
}

// stubRsync makes Load's rsync check independent of the test machine.
func stubRsync(t *testing.T, found bool) {
	t.Helper()
	old := LookPath
	t.Cleanup(func() { LookPath = old })
	LookPath = func(file string) (string, error) {
		if found {
			return "/usr/bin/" + file, nil
		}
		return "", exec.ErrNotFound
	}
}

// doc builds a small valid file; the parts replace the default sections.
func doc(rsync, extraSersync, extraHead string) string {
	return `<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <sersync>
	<localpath watch="/data">
	    <remote ip="127.0.0.1" name="m"/>
	</localpath>
	<rsync>` + rsync + `</rsync>
	` + extraSersync + `
    </sersync>
    ` + extraHead + `
</head>
`
}

func checkError(t *testing.T, err error) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("want error, got nil")
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *Error", err, err)
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Fatalf("error is not one line: %q", err.Error())
	}
	return ce
}

func TestStockFile(t *testing.T) {
	data := readStock(t)
	c, err := Parse("confxml.xml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		File:      "confxml.xml",
		Host:      Host{IP: "localhost", Port: 8008},
		Filter:    Filter{Excludes: []string{`(.*)\.svn`, `(.*)\.gz`, `^info/*`, `^static/*`}, Lines: []int{7, 8, 9, 10}},
		Events:    Events{Delete: true, CreateFolder: true, CloseWrite: true, MoveFrom: true, MoveTo: true},
		LocalPath: "/opt/tongbu",
		Remotes:   []Remote{{IP: "127.0.0.1", Name: "tongbu1"}},
		Rsync: Rsync{
			CommonParams: []string{"-artuz"},
			Auth:         Auth{Users: "root", PasswordFile: "/etc/rsync.pas"},
			SSH:          SSH{Command: "ssh"},
		},
		FailLog: FailLog{Path: "/tmp/rsync_fail_log.sh", Interval: 60 * time.Minute},
		Crontab: Crontab{Interval: 600 * time.Minute, FilterExcludes: []string{"*.php", "info/*"}},
		Plugin:  SersyncPlugin{Name: "command"},
		Command: &CommandPlugin{Prefix: "/bin/sh", IgnoreError: true, Includes: []string{`(.*)\.php`, `(.*)\.sh`}},
		Socket:  &SocketPlugin{LocalPath: "/opt/tongbu", Hosts: []HostPort{{IP: "192.168.138.20", Port: 8009}}},
		RefreshCDN: &RefreshCDNPlugin{
			LocalPath: "/data0/htdocs/cms.xoyo.com/site/", Domain: "ccms.chinacache.com", Port: 80,
			User: "xxxx", Password: "xxxx", SendURL: "http://pic.xoyo.com/cms",
			RegexURL: "cms.xoyo.com/site([/a-zA-Z0-9]*).xoyo.com/images",
		},
		Daemon: Daemon{Settle: 20 * time.Millisecond, MaxHold: 10 * time.Second, BatchMax: 5000, BackoffMax: 2 * time.Minute, HealthLag: time.Minute, Standby: 10 * time.Second},
	}
	want.Sources = []Source{{Path: want.LocalPath, Remotes: want.Remotes, Filter: want.Filter, line: 24}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("stock file:\n got %+v\nwant %+v", c, want)
	}
	if got := c.Destination(c.Remotes[0]); got != "127.0.0.1::tongbu1" {
		t.Errorf("Destination = %q", got)
	}

	// Load needs the watch directory to exist, so point it at a temp dir.
	stubRsync(t, true)
	dir := t.TempDir()
	watch := filepath.Join(dir, "tongbu")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	rewritten := bytes.Replace(data, []byte(`watch="/opt/tongbu"`), []byte(`watch="`+watch+`/"`), 1)
	file := filepath.Join(dir, "confxml.xml")
	if err := os.WriteFile(file, rewritten, 0o644); err != nil {
		t.Fatal(err)
	}
	lc, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if lc.LocalPath != watch || lc.File != file {
		t.Errorf("Load: LocalPath %q File %q, want %q %q", lc.LocalPath, lc.File, watch, file)
	}
	if lc.Socket.LocalPath != "/opt/tongbu" {
		t.Errorf("socket plugin localpath was rewritten: %q", lc.Socket.LocalPath)
	}
}

func TestTestdataFiles(t *testing.T) {
	c, err := Parse("full.xml", mustRead(t, "testdata/full.xml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:      "full.xml",
		Host:      Host{IP: "localhost", Port: 8008},
		Debug:     true,
		Filter:    Filter{Enabled: true, Excludes: []string{`(.*)\.swp$`, `^\.git/`}, Lines: []int{8, 9}},
		Events:    Events{Delete: true, CreateFolder: true, CreateFile: true, CloseWrite: true, MoveFrom: true, MoveTo: true},
		LocalPath: "/srv/www",
		Remotes:   []Remote{{IP: "10.0.0.1", Name: "www"}, {IP: "::1", Name: "www6"}},
		Rsync: Rsync{
			CommonParams: []string{"-artuz", "--bwlimit=1000", "--chmod=D755,F644"},
			Auth:         Auth{Enabled: true, Users: "sync", PasswordFile: "/etc/rsync.pas"},
			Port:         874,
			Timeout:      100 * time.Second,
			SSH:          SSH{Command: "ssh"},
		},
		FailLog: FailLog{Path: "/var/lib/sersyncd/fail.sh", Interval: 30 * time.Second},
		Crontab: Crontab{Enabled: true, Interval: 10 * time.Minute, FilterEnabled: true, FilterExcludes: []string{"*.tmp"}},
		Plugin:  SersyncPlugin{Name: "command"},
		Daemon: Daemon{
			Settle: 50 * time.Millisecond, MaxHold: 5 * time.Second, BatchMax: 100, BackoffMax: time.Minute, HealthLag: time.Minute, Standby: 5 * time.Second,
			DB: "/var/lib/sersyncd/queue.db", Metrics: "127.0.0.1:8009", LogFile: "/var/log/sersyncd.log", PidFile: "/run/sersyncd.pid",
		},
	}
	want.Sources = []Source{{Path: want.LocalPath, Remotes: want.Remotes, Filter: want.Filter, line: 22}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("full.xml:\n got %+v\nwant %+v", c, want)
	}
	if got := c.Destination(c.Remotes[1]); got != "sync@[::1]::www6" {
		t.Errorf("Destination = %q", got)
	}

	c, err = Parse("ssh.xml", mustRead(t, "testdata/ssh.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Rsync.SSH.Enabled || c.Rsync.SSH.Command != "ssh -p 2222 -i /etc/sersyncd/id_ed25519" {
		t.Errorf("ssh = %+v", c.Rsync.SSH)
	}
	if got := c.Destination(c.Remotes[0]); got != "backup@192.0.2.7:/backup/data" {
		t.Errorf("Destination = %q", got)
	}
	if c.Events != stockEvents {
		t.Errorf("events without <inotify> = %+v, want stock %+v", c.Events, stockEvents)
	}

	c, err = Parse("latin1.xml", mustRead(t, "testdata/latin1.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalPath != "/data/café" {
		t.Errorf("latin1 watch = %q", c.LocalPath)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		xml  string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"bad.xml: no root element"}},
		{"not xml", "hello", []string{"no root element"}},
		{"wrong root", `<?xml version="1.0"?>` + "\n<config/>", []string{"bad.xml:2: <config>: root element must be <head>"}},
		{"unclosed", string(mustRead(t, "testdata/bad_unclosed.xml")), []string{"bad.xml:6: malformed XML: element <localpath> closed by </sersync>"}},
		{"two roots", "<head/><head/>", []string{"more than one root element"}},
		{"unknown encoding", `<?xml version="1.0" encoding="x-nope"?><head/>`, []string{"malformed XML", "x-nope"}},
		{"no sersync", "<head/>", []string{"<head>: has no <sersync> section"}},
		{"no localpath", "<head><sersync/></head>", []string{"<sersync>: has no <localpath"}},
		{"watch missing", "<head><sersync><localpath><remote ip='a' name='b'/></localpath></sersync></head>", []string{`<localpath watch="">: is missing`}},
		{"watch empty", "<head><sersync><localpath watch=''><remote ip='a' name='b'/></localpath></sersync></head>", []string{`<localpath watch="">: is empty`}},
		{"watch relative", "<head><sersync><localpath watch='opt/x'><remote ip='a' name='b'/></localpath></sersync></head>", []string{`<localpath watch="opt/x">: is not an absolute path`}},
		{"no remote", "<head><sersync><localpath watch='/x'><!--<remote ip='a' name='b'/>--></localpath></sersync></head>", []string{"<localpath>: has no <remote"}},
		{"remote ip empty", "<head><sersync><localpath watch='/x'><remote ip='' name='b'/></localpath></sersync></head>", []string{`<remote ip="">: is empty`}},
		{"remote name empty", "<head><sersync><localpath watch='/x'><remote ip='a' name=''/></localpath></sersync></head>", []string{`<remote name="">: is empty`}},
		{"remote name option", "<head><sersync><localpath watch='/x'><remote ip='a' name='--delete'/></localpath></sersync></head>", []string{`<remote name="--delete">: must not start with '-'`}},
		{"remote name newline", "<head><sersync><localpath watch='/x'><remote ip='a' name='a&#10;b'/></localpath></sersync></head>", []string{`<remote name="a\nb">: contains a NUL or newline`}},
		{"remote ip option", "<head><sersync><localpath watch='/x'><remote ip='-oProxy' name='b'/></localpath></sersync></head>", []string{`<remote ip="-oProxy">: must not start with '-'`}},
		{"remote ip colon", "<head><sersync><localpath watch='/x'><remote ip='host:22' name='b'/></localpath></sersync></head>", []string{`<remote ip="host:22">: contains ':' but is not an IPv6 address`}},
		{"remote ip user without ssh", "<head><sersync><localpath watch='/x'><remote ip='u@h' name='b'/></localpath></sersync></head>", []string{`<remote ip="u@h">: contains whitespace`}},
		{"bad bool", doc("", "", `<debug start="yes"/>`), []string{`<debug start="yes">: must be "true" or "false"`}},
		{"bad inotify bool", doc("", "", `<inotify><delete start="1"/></inotify>`), []string{`<delete start="1">`}},
		{"bad filter regexp", doc("", "", `<filter start="false"><exclude expression="(.*\.svn"/></filter>`), []string{`<exclude expression="(.*\\.svn">: is not a valid regular expression (Go RE2 syntax: no backreferences or lookaround): error parsing regexp: missing closing )`}},
		{"empty filter regexp", doc("", "", `<filter start="true"><exclude expression=""/></filter>`), []string{`<exclude expression="">: is empty`}},
		{"bad include regexp", doc("", "", `<plugin name="command"><filter start="true"><include expression="[a-"/></filter></plugin>`), []string{`<include expression="[a-">: is not a valid regular expression`}},
		{"bad cdn regexp", doc("", "", `<plugin name="refreshCDN"><localpath watch="/x"><regexurl regex="true" match="("/></localpath></plugin>`), []string{`<regexurl match="(">`}},
		{"user port", doc(`<userDefinedPort start="true" port="70000"/>`, "", ""), []string{`<userDefinedPort port="70000">: must be a port number in 1..65535`}},
		{"user port text", doc(`<userDefinedPort start="true" port="abc"/>`, "", ""), []string{`port="abc"`}},
		{"host port", doc("", "", `<host hostip="localhost" port="0"/>`), []string{`<host port="0">`}},
		{"deshost port", doc("", "", `<plugin name="socket"><localpath watch="/x"><deshost ip="a" port="-1"/></localpath></plugin>`), []string{`<deshost port="-1">`}},
		{"timeout", doc(`<timeout start="true" time="0"/>`, "", ""), []string{`<timeout time="0">: must be a positive integer`}},
		{"timeout text", doc(`<timeout start="true" time="1m"/>`, "", ""), []string{`<timeout time="1m">`}},
		{"timeToExecute", doc("", `<failLog path="/tmp/f" timeToExecute="x"/>`, ""), []string{`<failLog timeToExecute="x">: must be a positive integer`}},
		{"failLog interval", doc("", `<failLog path="/tmp/f" interval="10"/>`, ""), []string{`<failLog interval="10">: must be a duration`}},
		{"failLog interval negative", doc("", `<failLog path="/tmp/f" interval="-1s"/>`, ""), []string{`<failLog interval="-1s">: must be positive`}},
		{"failLog interval under a second", doc("", `<failLog path="/tmp/f" interval="500ms"/>`, ""), []string{`<failLog interval="500ms">: must be a whole number of seconds, at least 1s`}},
		{"crontab interval fraction", doc("", `<crontab start="true" schedule="5" interval="1.5s"/>`, ""), []string{`<crontab interval="1.5s">: must be a whole number of seconds`}},
		{"schedule", doc("", `<crontab start="true" schedule="-5"/>`, ""), []string{`<crontab schedule="-5">`}},
		{"crontab interval", doc("", `<crontab start="true" schedule="5" interval="0s"/>`, ""), []string{`<crontab interval="0s">`}},
		{"settle", doc("", "", `<sersyncd settle="fast"/>`), []string{`<sersyncd settle="fast">`}},
		{"maxHold", doc("", "", `<sersyncd maxHold="0"/>`), []string{`<sersyncd maxHold="0">`}},
		{"maxHold below settle", doc("", "", `<sersyncd settle="3s" maxHold="1s"/>`), []string{`<sersyncd maxHold="1s">: is shorter than settle`}},
		{"backoffMax", doc("", "", `<sersyncd backoffMax="2"/>`), []string{`<sersyncd backoffMax="2">`}},
		{"standby", doc("", "", `<sersyncd standby="-1s"/>`), []string{`<sersyncd standby="-1s">: must be positive`}},
		{"standby text", doc("", "", `<sersyncd standby="soon"/>`), []string{`<sersyncd standby="soon">: must be a duration`}},
		{"standby past the rsync timeout", doc(`<timeout start="true" time="5"/>`, "", `<sersyncd standby="5s"/>`), []string{`<sersyncd standby="5s">: must be shorter than the rsync <timeout> (5s)`}},
		{"batchMax", doc("", "", `<sersyncd batchMax="0"/>`), []string{`<sersyncd batchMax="0">: must be a positive integer`}},
		{"verify text", doc("", "", `<sersyncd verify="daily"/>`), []string{`<sersyncd verify="daily">: must be a duration`}},
		{"verify negative", doc("", "", `<sersyncd verify="-1h"/>`), []string{`<sersyncd verify="-1h">: must be positive`}},
		{"verify fraction", doc("", "", `<sersyncd verify="1500ms"/>`), []string{`<sersyncd verify="1500ms">: must be a whole number of seconds`}},
		{"verifyChecksum", doc("", "", `<sersyncd verify="1h" verifyChecksum="yes"/>`), []string{`<sersyncd verifyChecksum="yes">: must be "true" or "false"`}},
		{"verifyRepair", doc("", "", `<sersyncd verify="1h" verifyRepair="1"/>`), []string{`<sersyncd verifyRepair="1">: must be "true" or "false"`}},
		{"auth no passwordfile", doc(`<auth start="true" users="root" passwordfile=""/>`, "", ""), []string{`<auth passwordfile="">: is empty`}},
		{"ssh and auth", doc(`<auth start="true" users="root" passwordfile="/p"/><ssh start="true"/>`, "", ""), []string{`<auth start="true">: cannot be combined with <ssh start="true">`}},
		{"ssh command quotes", doc(`<ssh start="true" command="ssh -i 'x"/>`, "", ""), []string{`<ssh command="ssh -i 'x">: cannot be split`}},
		{"ssh command empty", doc(`<ssh start="true" command=" "/>`, "", ""), []string{`<ssh command=" ">: is empty`}},
		{"plugin unknown", doc("", `<plugin start="true" name="mail"/>`, ""), []string{`<plugin name="mail">: is not a known plugin`}},
		{"params quotes", doc(`<commonParams params="-artuz --chmod='D7"/>`, "", ""), []string{`<commonParams params="-artuz --chmod='D7">: cannot be split`}},
		{"params operator", doc(`<commonParams params="-artuz; rm -rf /"/>`, "", ""), []string{`contains a shell operator`}},
		{"params empty", doc(`<commonParams params=""/>`, "", ""), []string{`<commonParams params="">: has no options`}},
		{"params stray path", doc(`<commonParams params="-artuz /etc"/>`, "", ""), []string{`<commonParams params="-artuz /etc">: "/etc" is not an option`}},
		{"params split value", doc(`<commonParams params="-artuz --bwlimit 100"/>`, "", ""), []string{`"100" is not an option`}},
		{"params files-from", doc(`<commonParams params="-artuz --files-from=/x"/>`, "", ""), []string{`"--files-from=/x" is not allowed`}},
		{"params exclude-from", doc(`<commonParams params="-artuz --exclude-from=/x"/>`, "", ""), []string{`"--exclude-from=/x" is not allowed`}},
		{"params include-from", doc(`<commonParams params="--include-from /x -a"/>`, "", ""), []string{`"--include-from" is not allowed`}},
		{"params from0", doc(`<commonParams params="-a --from0"/>`, "", ""), []string{`"--from0" is not allowed`}},
		{"params -0", doc(`<commonParams params="-a -0"/>`, "", ""), []string{`"-0" is not allowed`}},
		{"params -a0", doc(`<commonParams params="-a0"/>`, "", ""), []string{`"-a0" is not allowed`}},
		{"params daemon", doc(`<commonParams params="-a --daemon"/>`, "", ""), []string{`"--daemon" is not allowed`}},
		{"params server", doc(`<commonParams params="-a --server"/>`, "", ""), []string{`"--server"`}},
		{"params sender", doc(`<commonParams params="-a --sender"/>`, "", ""), []string{`"--sender"`}},
		{"params rsh", doc(`<commonParams params="-a --rsh=ssh"/>`, "", ""), []string{`"--rsh=ssh" sets the remote shell; use <ssh`}},
		{"params -e", doc(`<commonParams params="-a -e ssh"/>`, "", ""), []string{`"-e" sets the remote shell`}},
		{"params -avze", doc(`<commonParams params="-avzessh"/>`, "", ""), []string{`"-avzessh" sets the remote shell`}},
		{"params lone dash", doc(`<commonParams params="-a -"/>`, "", ""), []string{`"-" is not an option`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("bad.xml", []byte(tt.xml))
			if err == nil {
				t.Fatalf("want error, got config %+v", c)
			}
			checkError(t, err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		xml   string
		check func(*Config) bool
	}{
		{"params with short option values", doc(`<commonParams params="-artuz -T/tmp/e0 -B1024 --timeout=10 --delete"/>`, "", ""),
			func(c *Config) bool { return len(c.Rsync.CommonParams) == 5 }},
		{"disabled port is not checked", doc(`<userDefinedPort start="false" port="nope"/><timeout start="false" time="x"/>`, "", ""),
			func(c *Config) bool { return c.Rsync.Port == 0 && c.Rsync.Timeout == 0 }},
		{"auth without users", doc(`<auth start="true" users="" passwordfile="/p"/>`, "", ""),
			func(c *Config) bool { return c.Destination(c.Remotes[0]) == "127.0.0.1::m" }},
		{"bool case-insensitive", doc("", "", `<debug start="True"/>`),
			func(c *Config) bool { return c.Debug }},
		{"inotify present means explicit", doc("", "", `<inotify><modify start="true"/></inotify>`),
			func(c *Config) bool { return c.Events == Events{Modify: true} }},
		{"unknown elements and attributes ignored", doc(`<bogus x="y"/>`, `<other/>`, `<what ever="1"><x/></what>`),
			func(c *Config) bool { return len(c.Remotes) == 1 }},
		{"crontab filter patterns are not regexps", doc("", `<crontab start="true" schedule="1"><crontabfilter start="true"><exclude expression="[*.php"/></crontabfilter></crontab>`, ""),
			func(c *Config) bool {
				return c.Crontab.FilterExcludes[0] == "[*.php" && c.Crontab.Interval == time.Minute
			}},
		{"crontab interval overrides schedule", doc("", `<crontab start="true" schedule="600" interval="90s"/>`, ""),
			func(c *Config) bool { return c.Crontab.Interval == 90*time.Second }},
		{"watch is cleaned", strings.Replace(doc("", "", ""), `watch="/data"`, `watch="/data//sub/../x/"`, 1),
			func(c *Config) bool { return c.LocalPath == "/data/x" }},
		{"no rsync section keeps defaults", strings.Replace(doc("", "", ""), "<rsync></rsync>", "", 1),
			func(c *Config) bool {
				return reflect.DeepEqual(c.Rsync, Rsync{CommonParams: []string{"-artuz"}, SSH: SSH{Command: "ssh"}})
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("ok.xml", []byte(tt.xml))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		xml  string
		want []string
	}{
		{"none", doc("", `<plugin start="false" name="command"/>`, `<debug start="true"/><crontab start="true"/>`), nil},
		{"xfs", doc("", "", `<fileSystem xfs="true"/>`), []string{"w.xml: <fileSystem>: xfs option has no effect in sersyncd"}},
		{"command plugin", doc("", `<plugin start="true" name="command"/>`, ""), []string{"w.xml: <plugin>: plugin command is enabled but there is no top-level <plugin name=\"command\"> section; ignored"}},
		{"refreshCDN plugin", doc("", `<plugin start="true" name="refreshCDN"/>`, ""), []string{"w.xml: <plugin>: plugin refreshCDN is not implemented yet; ignored"}},
		{"--delete in params with delete off", doc(`<commonParams params="-artuz --delete-after"/>`, "", `<inotify><delete start="false"/></inotify>`),
			[]string{`w.xml: <commonParams>: --delete-after deletes on the targets although <delete start="false"> (sersync passed it too); remove it to keep what the source deleted`}},
		{"--delete in params with delete on", doc(`<commonParams params="-artuz --delete"/>`, "", `<inotify><delete start="true"/></inotify>`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("w.xml", []byte(tt.xml))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Warnings, tt.want) {
				t.Errorf("warnings = %q, want %q", c.Warnings, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, watchPath string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		text := strings.Replace(doc("", "", ""), `watch="/data"`, `watch="`+watchPath+`"`, 1)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		file     string
		rsync    bool
		want     string // "" means success
		wantLine bool
	}{
		{"ok", write("ok.xml", watch), true, "", false},
		{"unreadable", filepath.Join(dir, "missing.xml"), true, "missing.xml: cannot read: ", false},
		{"watch missing", write("w1.xml", filepath.Join(dir, "nope")), true, `w1.xml:4: <localpath watch="` + filepath.Join(dir, "nope") + `">: does not exist`, true},
		{"watch not dir", write("w2.xml", plain), true, `w2.xml:4: <localpath watch="` + plain + `">: is not a directory`, true},
		{"no rsync", write("w3.xml", watch), false, "w3.xml: <rsync>: no rsync binary on PATH; install rsync", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stubRsync(t, tt.rsync)
			c, err := Load(tt.file)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.LocalPath != watch {
					t.Errorf("LocalPath = %q", c.LocalPath)
				}
				return
			}
			ce := checkError(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\n does not contain %q", err, tt.want)
			}
			if tt.name == "no rsync" && (ce.Element != "rsync" || ce.Msg != "no rsync binary on PATH; install rsync") {
				t.Errorf("rsync error = %+v", ce)
			}
		})
	}
}

func TestPasswordFile(t *testing.T) {
	stubRsync(t, true)
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		pass string
		want string
	}{
		{"0600", mk("p600", 0o600), ""},
		{"0400", mk("p400", 0o400), ""},
		{"0644", mk("p644", 0o644), "is accessible by group or others (mode 0644); run chmod 600 " + filepath.Join(dir, "p644") + ": rsync refuses such files"},
		{"0640", mk("p640", 0o640), "(mode 0640)"},
		{"0604", mk("p604", 0o604), "(mode 0604)"},
		{"missing", filepath.Join(dir, "nope"), "does not exist"},
		{"directory", watch, "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tt.name+".xml")
			text := strings.Replace(doc(`<auth start="true" users="u" passwordfile="`+tt.pass+`"/>`, "", ""), `watch="/data"`, `watch="`+watch+`"`, 1)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			ce := checkError(t, err)
			if ce.Element != "auth" || ce.Attr != "passwordfile" || ce.Value != tt.pass || ce.Line != 7 {
				t.Errorf("error fields = %+v", ce)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\n does not contain %q", err, tt.want)
			}
		})
	}

	if os.Geteuid() == 0 {
		t.Run("not owned by root", func(t *testing.T) {
			p := mk("pother", 0o600)
			if err := os.Chown(p, 1, 1); err != nil {
				t.Skipf("chown: %v", err)
			}
			if msg := checkPasswordFile(p); !strings.Contains(msg, "owned by uid 1, not root") {
				t.Errorf("msg = %q", msg)
			}
		})
	}
}

func TestDestination(t *testing.T) {
	tests := []struct {
		name  string
		rsync Rsync
		r     Remote
		want  string
	}{
		{"daemon", Rsync{}, Remote{"10.0.0.1", "mod"}, "10.0.0.1::mod"},
		{"daemon hostname", Rsync{}, Remote{"backup.example", "mod"}, "backup.example::mod"},
		{"daemon ipv6", Rsync{}, Remote{"::1", "mod"}, "[::1]::mod"},
		{"daemon ipv6 bracketed", Rsync{}, Remote{"[2001:db8::1]", "mod"}, "[2001:db8::1]::mod"},
		{"auth", Rsync{Auth: Auth{Enabled: true, Users: "root"}}, Remote{"10.0.0.1", "mod"}, "root@10.0.0.1::mod"},
		{"auth ipv6", Rsync{Auth: Auth{Enabled: true, Users: "root"}}, Remote{"fe80::1", "mod"}, "root@[fe80::1]::mod"},
		{"auth no users", Rsync{Auth: Auth{Enabled: true}}, Remote{"10.0.0.1", "mod"}, "10.0.0.1::mod"},
		{"auth disabled ignores users", Rsync{Auth: Auth{Users: "root"}}, Remote{"10.0.0.1", "mod"}, "10.0.0.1::mod"},
		{"ssh", Rsync{SSH: SSH{Enabled: true}}, Remote{"10.0.0.1", "/srv/backup"}, "10.0.0.1:/srv/backup"},
		{"ssh user", Rsync{SSH: SSH{Enabled: true}}, Remote{"bk@10.0.0.1", "/srv/backup"}, "bk@10.0.0.1:/srv/backup"},
		{"ssh ipv6", Rsync{SSH: SSH{Enabled: true}}, Remote{"2001:db8::2", "backup"}, "[2001:db8::2]:backup"},
		{"ssh user ipv6", Rsync{SSH: SSH{Enabled: true}}, Remote{"bk@2001:db8::2", "backup"}, "bk@[2001:db8::2]:backup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Rsync: tt.rsync}
			if got := c.Destination(tt.r); got != tt.want {
				t.Errorf("Destination(%+v) = %q, want %q", tt.r, got, tt.want)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "f.xml", Line: 3, Element: "timeout", Attr: "time", Value: "x", Msg: "bad"}, `f.xml:3: <timeout time="x">: bad`},
		{"no line", Error{File: "f.xml", Element: "rsync", Msg: "m"}, `f.xml: <rsync>: m`},
		{"no element", Error{File: "f.xml", Line: 2, Msg: "malformed XML: x"}, `f.xml:2: malformed XML: x`},
		{"newlines escaped", Error{File: "a\nb", Element: "e", Attr: "a", Value: "v\nw", Msg: "m\nn"}, `a\nb: <e a="v\nw">: m\nn`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(stockPath); err == nil {
		f.Add(data)
		f.Add(data[:len(data)/2])
		f.Add(bytes.Replace(data, []byte(`"true"`), []byte(`"maybe"`), 1))
		f.Add(bytes.Replace(data, []byte(`<!--`), nil, -1))
	}
	files, _ := filepath.Glob("testdata/*.xml")
	for _, p := range files {
		data := mustRead(f, p)
		f.Add(data)
		f.Add(bytes.ReplaceAll(data, []byte(`"`), []byte(`'`)))
	}
	f.Add([]byte(doc(`<commonParams params="-artuz -e 'ssh"/>`, "", "")))
	f.Add([]byte(doc(`<auth start="true" passwordfile="/p"/><ssh start="true"/>`, `<crontab interval="1h"/>`, `<sersyncd settle="1h"/>`)))
	f.Add([]byte(`<?xml version="1.0" encoding="GB2312"?><head><sersync><localpath watch="/a"><remote ip="::1" name="x"/></localpath></sersync></head>`))
	f.Add([]byte("<head>\x00</head>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.xml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *Error", err, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err.Error())
			}
			return
		}
		if len(c.Remotes) == 0 || !filepath.IsAbs(c.LocalPath) {
			t.Fatalf("accepted config without remotes or absolute watch: %+v", c)
		}
		for _, r := range c.Remotes {
			_ = c.Destination(r)
		}
		// Accepted trees never overlap, and each has its targets.
		for i, s := range c.Sources {
			if len(s.Remotes) == 0 || !filepath.IsAbs(s.Path) {
				t.Fatalf("accepted tree without remotes or absolute watch: %+v", s)
			}
			for _, o := range c.Sources[:i] {
				if s.Path == o.Path || within(s.Path, o.Path) || within(o.Path, s.Path) {
					t.Fatalf("accepted overlapping trees %q and %q", o.Path, s.Path)
				}
			}
		}
		for _, w := range c.Warnings {
			if strings.ContainsAny(w, "\n\r") {
				t.Fatalf("warning is not one line: %q", w)
			}
		}
	})
}

func TestStandby(t *testing.T) {
	tests := []struct {
		name, sersyncd string
		want           time.Duration
	}{
		{"default", ``, DefaultStandby},
		{"off", `<sersyncd standby="0"/>`, 0},
		{"set", `<sersyncd standby="2s"/>`, 2 * time.Second},
	}
	// Left out, it stays under a short rsync timeout by itself.
	c, err := Parse("c.xml", []byte(doc(`<timeout start="true" time="4"/>`, "", "")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.Standby != 2*time.Second {
		t.Errorf("default Standby under a 4s timeout = %s, want 2s", c.Daemon.Standby)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.xml", []byte(doc("", "", tt.sersyncd)))
			if err != nil {
				t.Fatal(err)
			}
			if c.Daemon.Standby != tt.want {
				t.Errorf("Standby = %s, want %s", c.Daemon.Standby, tt.want)
			}
		})
	}
}

func TestRsyncBinary(t *testing.T) {
	// rsync on PATH is not needed when the attribute names the binary.
	stubRsync(t, false)
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	exe := filepath.Join(dir, "my-rsync")
	plain := filepath.Join(dir, "plain")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{exe, 0o755}, {plain, 0o644}} {
		if err := os.WriteFile(f.path, []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(watch, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, attr string
		want       string // the error's end; "" means success
	}{
		{"executable", exe, ""},
		{"cleaned", dir + "//my-rsync", ""},
		{"missing", filepath.Join(dir, "nope"), `<sersyncd rsync="` + filepath.Join(dir, "nope") + `">: does not exist`},
		{"not executable", plain, `<sersyncd rsync="` + plain + `">: is not executable (mode 0644); run chmod +x ` + plain},
		{"directory", dir, `<sersyncd rsync="` + dir + `">: is not a regular file`},
		{"relative", "bin/rsync", `<sersyncd rsync="bin/rsync">: is not an absolute path`},
		{"empty", "", `<sersyncd rsync="">: is empty; leave it out to use rsync from PATH`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.xml")
			text := strings.Replace(doc("", "", `<sersyncd rsync="`+tt.attr+`"/>`), `watch="/data"`, `watch="`+watch+`"`, 1)
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Daemon.Rsync != exe {
					t.Errorf("Daemon.Rsync = %q, want %q", c.Daemon.Rsync, exe)
				}
				return
			}
			checkError(t, err)
			if msg := err.Error(); !strings.HasPrefix(msg, p+":10: ") || !strings.HasSuffix(msg, tt.want) {
				t.Errorf("error %q\nwant %s:10: ...%s", msg, p, tt.want)
			}
		})
	}
}

// TestDeclaredEncoding: sersync used the file's bytes as they are, so a
// UTF-8 path in its stock file (declared ISO-8859-1) named the directory.
func TestDeclaredEncoding(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"UTF-8 text declared ISO-8859-1", []byte(strings.Replace(doc("", "", ""), `watch="/data"`, `watch="/data/中文 café"`, 1)), "/data/中文 café"},
		{"Latin-1 text declared ISO-8859-1", []byte(strings.Replace(doc("", "", ""), `watch="/data"`, "watch=\"/data/caf\xe9\"", 1)), "/data/café"},
		{"UTF-8 declared UTF-8", []byte(strings.Replace(strings.Replace(doc("", "", ""), "ISO-8859-1", "UTF-8", 1), `watch="/data"`, `watch="/数据"`, 1)), "/数据"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.xml", tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if c.LocalPath != tt.want {
				t.Errorf("watch = %q, want %q", c.LocalPath, tt.want)
			}
		})
	}
}

// sources builds a file whose <sersync> holds the given <localpath>
// sections (each on lines of its own, so errors name their lines).
func sources(rsync string, localpaths ...string) string {
	return "<head>\n<sersync>\n" + strings.Join(localpaths, "\n") + "\n<rsync>" + rsync + "</rsync>\n</sersync>\n</head>\n"
}

func TestSources(t *testing.T) {
	const (
		a  = "<localpath watch=\"/srv/a\">\n<remote ip=\"127.0.0.1\" name=\"a\"/>\n<remote ip=\"127.0.0.2\" name=\"a\"/>\n</localpath>"
		b  = "<localpath watch=\"/srv/b/\">\n<remote ip=\"127.0.0.1\" name=\"b\"/>\n</localpath>"
		ab = "<localpath watch=\"/srv/ab\">\n<remote ip=\"127.0.0.3\" name=\"x\"/>\n</localpath>"
	)
	tests := []struct {
		name    string
		xml     string
		wantErr string // "" for a valid file
		check   func(t *testing.T, c *Config)
	}{
		{name: "several trees, each with its targets", xml: sources("", a, b, ab), check: func(t *testing.T, c *Config) {
			if len(c.Sources) != 3 || c.Sources[0].Path != "/srv/a" || c.Sources[1].Path != "/srv/b" || c.Sources[2].Path != "/srv/ab" {
				t.Fatalf("sources = %+v", c.Sources)
			}
			if got := len(c.Sources[0].Remotes) + len(c.Sources[1].Remotes); got != 3 {
				t.Errorf("remotes of a and b = %d, want 3", got)
			}
			if c.LocalPath != "/srv/a" || !reflect.DeepEqual(c.Remotes, c.Sources[0].Remotes) {
				t.Errorf("LocalPath/Remotes = %q %v, want the first source's", c.LocalPath, c.Remotes)
			}
			if s := c.SourceOf("/srv/ab/f"); s == nil || s.Path != "/srv/ab" {
				t.Errorf("SourceOf(/srv/ab/f) = %+v", s)
			}
			if s := c.SourceOf("/srv/abc"); s != nil {
				t.Errorf("SourceOf(/srv/abc) = %+v, want none", s)
			}
		}},
		{name: "own filter, the top-level one for the others", xml: strings.Replace(sources("", a,
			"<localpath watch=\"/srv/b\">\n<remote ip=\"127.0.0.1\" name=\"b\"/>\n<filter start=\"true\"><exclude expression=\"(.*)\\.log\"/></filter>\n<rsyncFilter start=\"true\" file=\"/etc/b.rules\"/>\n</localpath>"),
			"<sersync>", "<filter start=\"true\"><exclude expression=\"(.*)\\.tmp\"/></filter>\n<rsyncFilter start=\"false\" file=\"/etc/top.rules\"/>\n<sersync>", 1),
			check: func(t *testing.T, c *Config) {
				sa, sb := c.Sources[0], c.Sources[1]
				if sa.OwnFilter || !reflect.DeepEqual(sa.Excludes(), []string{`(.*)\.tmp`}) {
					t.Errorf("a: own %v excludes %q, want the top-level (.*)\\.tmp", sa.OwnFilter, sa.Excludes())
				}
				if !sb.OwnFilter || !reflect.DeepEqual(sb.Excludes(), []string{`(.*)\.log`}) || sb.Filter.Lines[0] != 11 {
					t.Errorf("b: own %v excludes %q lines %v, want its own (.*)\\.log on line 11", sb.OwnFilter, sb.Excludes(), sb.Filter.Lines)
				}
				if sa.OwnRules || sa.RsyncRules.Enabled || sa.RsyncRules.File != "/etc/top.rules" {
					t.Errorf("a: rules %+v, want the top-level (off)", sa.RsyncRules)
				}
				if !sb.OwnRules || !sb.RsyncRules.Enabled || sb.RsyncRules.File != "/etc/b.rules" {
					t.Errorf("b: rules %+v, want its own", sb.RsyncRules)
				}
			}},
		{name: "testdata/sources.xml", xml: string(mustRead(t, "testdata/sources.xml")), check: func(t *testing.T, c *Config) {
			if len(c.Sources) != 3 || c.Sources[1].Path != "/srv/mail" || !c.Sources[1].OwnFilter || c.Sources[2].OwnFilter ||
				!reflect.DeepEqual(c.Sources[2].Excludes(), []string{`(.*)\.tmp`}) || c.Destination(c.Sources[1].Remotes[0]) != "127.0.0.1::backup/mail" {
				t.Errorf("sources = %+v", c.Sources)
			}
		}},
		{name: "sibling modules of one daemon", xml: sources("",
			"<localpath watch=\"/srv/a\">\n<remote ip=\"h\" name=\"m/a\"/>\n</localpath>",
			"<localpath watch=\"/srv/b\">\n<remote ip=\"h\" name=\"m/b\"/>\n</localpath>")},
		{name: "same tree twice", xml: sources("", a, "<localpath watch=\"/srv/a/\">\n<remote ip=\"h\" name=\"z\"/>\n</localpath>"),
			wantErr: `bad.xml:7: <localpath watch="/srv/a">: is the same tree as the <localpath> of line 3`},
		{name: "tree inside another", xml: sources("", a, "<localpath watch=\"/srv/a/sub\">\n<remote ip=\"h\" name=\"z\"/>\n</localpath>"),
			wantErr: `bad.xml:7: <localpath watch="/srv/a/sub">: is inside the <localpath watch="/srv/a"> of line 3: its changes would be pushed twice`},
		{name: "tree holding another", xml: sources("", a, "<localpath watch=\"/srv\">\n<remote ip=\"h\" name=\"z\"/>\n</localpath>"),
			wantErr: `bad.xml:7: <localpath watch="/srv">: holds the <localpath watch="/srv/a"> of line 3`},
		{name: "root holds every tree", xml: sources("", a, "<localpath watch=\"/\">\n<remote ip=\"h\" name=\"z\"/>\n</localpath>"),
			wantErr: `<localpath watch="/">: holds the <localpath watch="/srv/a">`},
		{name: "same destination", xml: sources("", a, "<localpath watch=\"/srv/c\">\n<remote ip=\"127.0.0.2\" name=\"a\"/>\n</localpath>"),
			wantErr: `bad.xml:8: <remote name="a">: 127.0.0.2::a is also a target of <localpath watch="/srv/a"> (line 5): both trees would push into the same directory there, and each one's full push would delete what the other pushed`},
		{name: "same destination with auth", xml: sources(`<auth start="true" users="u" passwordfile="/p"/>`, b, "<localpath watch=\"/srv/c\">\n<remote ip=\"127.0.0.1\" name=\"b\"/>\n</localpath>"),
			wantErr: `<remote name="b">: u@127.0.0.1::b is also a target of <localpath watch="/srv/b">`},
		{name: "module inside another's", xml: sources("", b, "<localpath watch=\"/srv/c\">\n<remote ip=\"127.0.0.1\" name=\"b/sub\"/>\n</localpath>"),
			wantErr: `<remote name="b/sub">: 127.0.0.1::b/sub overlaps 127.0.0.1::b, a target of <localpath watch="/srv/b"> (line 4)`},
		{name: "ssh directory inside another's", xml: sources(`<ssh start="true"/>`,
			"<localpath watch=\"/srv/a\">\n<remote ip=\"u@h\" name=\"/backup\"/>\n</localpath>",
			"<localpath watch=\"/srv/b\">\n<remote ip=\"v@h\" name=\"/backup/b/\"/>\n</localpath>"),
			wantErr: `<remote name="/backup/b/">: v@h:/backup/b/ overlaps u@h:/backup`},
		{name: "second filter in a localpath", xml: sources("", "<localpath watch=\"/x\">\n<remote ip=\"h\" name=\"m\"/>\n<filter/>\n<filter/>\n</localpath>"),
			wantErr: `bad.xml:6: <filter>: a second <filter> in one <localpath>`},
		{name: "own rules file relative", xml: sources("", "<localpath watch=\"/x\">\n<remote ip=\"h\" name=\"m\"/>\n<rsyncFilter start=\"true\" file=\"r.rules\"/>\n</localpath>"),
			wantErr: `bad.xml:5: <rsyncFilter file="r.rules">: must be an absolute path`},
		{name: "own filter expression bad", xml: sources("", "<localpath watch=\"/x\">\n<remote ip=\"h\" name=\"m\"/>\n<filter start=\"true\"><exclude expression=\"(a\"/></filter>\n</localpath>"),
			wantErr: `bad.xml:5: <exclude expression="(a">: is not a valid regular expression`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("bad.xml", []byte(tt.xml))
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("want error %q, got config %+v", tt.wantErr, c.Sources)
				}
				checkError(t, err)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q\n does not contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestSourcesLoad: Load checks every tree and reads each source's own rules.
func TestSourcesLoad(t *testing.T) {
	stubRsync(t, true)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rules := filepath.Join(dir, "b.rules")
	if err := os.WriteFile(rules, []byte("- *.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, xml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(xml), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.xml", sources("",
		"<localpath watch=\""+a+"\">\n<remote ip=\"h\" name=\"a\"/>\n</localpath>",
		"<localpath watch=\""+b+"\">\n<remote ip=\"h\" name=\"b\"/>\n<rsyncFilter start=\"true\" file=\""+rules+"\"/>\n</localpath>"))
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sources[0].RsyncRules.Rules != nil || !c.Sources[1].RsyncRules.Rules.Excluded("x.log", false) {
		t.Errorf("rules: a %v, b %v; want none for a, b's own excluding x.log", c.Sources[0].RsyncRules.Rules, c.Sources[1].RsyncRules.Rules)
	}
	missing := write("missing.xml", sources("",
		"<localpath watch=\""+a+"\">\n<remote ip=\"h\" name=\"a\"/>\n</localpath>",
		"<localpath watch=\""+filepath.Join(dir, "nope")+"\">\n<remote ip=\"h\" name=\"b\"/>\n</localpath>"))
	_, err = Load(missing)
	if ce := checkError(t, err); ce.Line != 6 || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("second tree missing: %v, want line 6, does not exist", err)
	}
	noRules := write("norules.xml", sources("",
		"<localpath watch=\""+a+"\">\n<remote ip=\"h\" name=\"a\"/>\n<rsyncFilter start=\"true\" file=\""+filepath.Join(dir, "none.rules")+"\"/>\n</localpath>"))
	_, err = Load(noRules)
	if ce := checkError(t, err); ce.Line != 5 || ce.Element != "rsyncFilter" {
		t.Errorf("own rules file missing: %v, want line 5, <rsyncFilter>", err)
	}
}

func TestVerifySchedule(t *testing.T) {
	tests := []struct {
		name, sersyncd   string
		every            time.Duration
		checksum, repair bool
	}{
		{"absent", ``, 0, false, false},
		{"off", `<sersyncd verify="0"/>`, 0, false, false},
		{"daily", `<sersyncd verify="24h" verifyChecksum="false"/>`, 24 * time.Hour, false, false},
		{"short, checksum, repair", `<sersyncd verify="2s" verifyChecksum="true" verifyRepair="true"/>`, 2 * time.Second, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.xml", []byte(doc("", "", tt.sersyncd)))
			if err != nil {
				t.Fatal(err)
			}
			d := c.Daemon
			if d.Verify != tt.every || d.VerifyChecksum != tt.checksum || d.VerifyRepair != tt.repair {
				t.Errorf("Verify, VerifyChecksum, VerifyRepair = %s, %t, %t; want %s, %t, %t",
					d.Verify, d.VerifyChecksum, d.VerifyRepair, tt.every, tt.checksum, tt.repair)
			}
		})
	}
}
