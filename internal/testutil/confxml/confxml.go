// Package confxml writes the confxml.xml that the end-to-end tests
// (cmd/sersyncd) and the benchmark (scripts/bench) run sersyncd with, from
// one template. It imports no testing, so the benchmark program can use it.
package confxml

import (
	"bytes"
	"os"
	"text/template"
)

// Remote is one <remote>: an rsync daemon's address and module, or with
// SSH a host and a directory.
type Remote struct{ IP, Module string }

// Conf is what a test or the benchmark varies; a zero field leaves the
// setting off or at sersyncd's default.
type Conf struct {
	Debug           bool
	Src             string // <localpath watch>
	Dir             string // where fail.log goes
	Targets         []Remote
	Port            int // every remote's rsync daemon port (or sshd's)
	Excludes        []string
	Attrib          bool
	KeepDeleted     bool   // <delete start="false">
	Params          string // <commonParams>
	AuthUser        string
	PasswordFile    string // set: auth on
	Timeout         int    // rsync --timeout, seconds
	SSH             string // set: <ssh start="true" command=...>
	FailLogEvery    string
	CrontabEvery    string // set: the crontab full push on
	CrontabExcludes []string
	CommandPrefix   string // set: the command plugin on
	RulesFile       string // set: <rsyncFilter>
	// The <sersyncd> element, left out when all are empty.
	Settle, BackoffMax, Rsync, VerifyEvery string
}

// Write writes c to path as confxml.xml.
func Write(path string, c Conf) error {
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, c); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

var confTemplate = template.Must(template.New("conf").Parse(`<?xml version="1.0" encoding="ISO-8859-1"?>
<head version="2.5">
    <debug start="{{.Debug}}"/>
    <filter start="{{if .Excludes}}true{{else}}false{{end}}">
{{- range .Excludes}}
	<exclude expression="{{.}}"></exclude>
{{- end}}
    </filter>
    <inotify>
	<delete start="{{if .KeepDeleted}}false{{else}}true{{end}}"/>
	<createFolder start="true"/>
	<createFile start="false"/>
	<closeWrite start="true"/>
	<moveFrom start="true"/>
	<moveTo start="true"/>
	<attrib start="{{.Attrib}}"/>
	<modify start="false"/>
    </inotify>
    <sersync>
	<localpath watch="{{.Src}}">
{{- range .Targets}}
	    <remote ip="{{.IP}}" name="{{.Module}}"/>
{{- end}}
	</localpath>
	<rsync>
	    <commonParams params="{{.Params}}"/>
	    <auth start="{{if .PasswordFile}}true{{else}}false{{end}}" users="{{.AuthUser}}" passwordfile="{{or .PasswordFile "/etc/rsync.pas"}}"/>
	    <userDefinedPort start="true" port="{{.Port}}"/>
	    <timeout start="true" time="{{.Timeout}}"/>
	    <ssh start="{{if .SSH}}true" command="{{.SSH}}{{else}}false{{end}}"/>
	</rsync>
	<failLog path="{{.Dir}}/fail.log" timeToExecute="60"{{if .FailLogEvery}} interval="{{.FailLogEvery}}"{{end}}/>
	<crontab start="{{if .CrontabEvery}}true{{else}}false{{end}}" schedule="600"{{if .CrontabEvery}} interval="{{.CrontabEvery}}"{{end}}>
	    <crontabfilter start="{{if .CrontabExcludes}}true{{else}}false{{end}}">
{{- range .CrontabExcludes}}
		<exclude expression="{{.}}"></exclude>
{{- end}}
	    </crontabfilter>
	</crontab>
	<plugin start="{{if .CommandPrefix}}true{{else}}false{{end}}" name="command"/>
    </sersync>
    <plugin name="command">
	<param prefix="{{html .CommandPrefix}}" suffix="" ignoreError="false"/>
    </plugin>
{{- if .RulesFile}}
    <rsyncFilter start="true" file="{{.RulesFile}}"/>
{{- end}}
{{- if or .Settle .BackoffMax .Rsync .VerifyEvery}}
    <sersyncd{{with .Settle}} settle="{{.}}"{{end}}{{with .BackoffMax}} backoffMax="{{.}}"{{end}}{{if .Rsync}} rsync="{{.Rsync}}"{{end}}{{if .VerifyEvery}} verify="{{.VerifyEvery}}"{{end}}/>
{{- end}}
</head>
`))
