package main

import (
	"fmt"
	"io"
	"log/syslog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	lsyslog "github.com/sirupsen/logrus/hooks/syslog"

	"github.com/sersyncd/sersyncd/internal/config"
)

// Where the daemon's log goes (--log-target). The default, "", is stderr,
// which -d points at --log-file.
const (
	logToStderr = "stderr"
	logToFile   = "file"
	logToSyslog = "syslog"
)

const (
	defaultSyslogFacility = "daemon"
	defaultSyslogTag      = "sersyncd"
)

// syslogNetwork and syslogAddr name the syslog socket; empty means the
// local one (/dev/log). Tests point them at a socket of their own.
var syslogNetwork, syslogAddr = "", ""

// syslogFacilities are the facility names of syslog(3) and logger(1).
var syslogFacilities = map[string]syslog.Priority{
	"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL,
	"daemon": syslog.LOG_DAEMON, "auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG,
	"lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS, "uucp": syslog.LOG_UUCP,
	"cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
	"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2,
	"local3": syslog.LOG_LOCAL3, "local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5,
	"local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
}

// checkLogFlags is the flag validation of the log settings; the message
// names the flag.
func checkLogFlags(f daemonFlags) error {
	switch f.logFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: must be text or json", f.logFormat)
	}
	switch f.logTarget {
	case "", logToStderr, logToFile, logToSyslog:
	default:
		return fmt.Errorf("--log-target %q: must be stderr, file or syslog", f.logTarget)
	}
	if _, ok := syslogFacilities[f.syslogFacility]; !ok {
		return fmt.Errorf("--syslog-facility %q: must be one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0..local7", f.syslogFacility)
	}
	if f.syslogTag == "" || strings.ContainsAny(f.syslogTag, "\x00\n\r \t[]:") {
		return fmt.Errorf("--syslog-tag %q: must be a non-empty word without spaces, brackets or colons", f.syslogTag)
	}
	return nil
}

// openLogger builds the daemon's logger for --log-target; the closer ends
// what it opened (a file, the syslog connection).
func openLogger(f daemonFlags, cfg *config.Config, stderr io.Writer) (*logrus.Logger, io.Closer, error) {
	log := logrus.New()
	log.SetOutput(stderr)
	if cfg.Debug {
		log.SetLevel(logrus.DebugLevel)
	}
	text := &logrus.TextFormatter{FullTimestamp: true}
	var closer io.Closer = nopCloser{}
	switch f.logTarget {
	case logToFile:
		if err := os.MkdirAll(filepath.Dir(f.logFile), 0o755); err != nil {
			return nil, nil, fmt.Errorf("create log directory: %w", err)
		}
		out, err := os.OpenFile(f.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		log.SetOutput(out)
		closer = out
	case logToSyslog:
		hook, err := lsyslog.NewSyslogHook(syslogNetwork, syslogAddr, syslogFacilities[f.syslogFacility]|syslog.LOG_INFO, f.syslogTag)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to syslog (%s): %w", syslogWhere(), err)
		}
		log.AddHook(hook)
		// The hook writes every line; syslog stamps it with the time.
		log.SetOutput(io.Discard)
		text = &logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}
		closer = hook.Writer
	}
	if f.logFormat == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(text)
	}
	return log, closer, nil
}

// logsToStderr says whether the log is written on the daemon's stderr.
func logsToStderr(f daemonFlags) bool {
	return f.logTarget == "" || f.logTarget == logToStderr
}

// logWhere names where the log goes, for the messages of -d.
func logWhere(f daemonFlags) string {
	if f.logTarget == logToSyslog {
		return fmt.Sprintf("syslog (facility %s, tag %s; crashes in %s)", f.syslogFacility, f.syslogTag, f.logFile)
	}
	return f.logFile
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// syslogWhere names the socket openLogger connects to.
func syslogWhere() string {
	if syslogAddr == "" {
		return "/dev/log"
	}
	return syslogNetwork + " " + syslogAddr
}
