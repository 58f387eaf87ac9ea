package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
)

// syslogLine is what log/syslog writes to a local socket:
// "<PRI>Jan  2 15:04:05 TAG[PID]: MESSAGE\n".
var syslogLine = regexp.MustCompile(`^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\S+)\[(\d+)\]: (.*)\n$`)

// TestSyslogTarget sends log lines through a real unixgram socket standing
// in for /dev/log and checks the priority (facility*8 + severity), the tag
// and the message, in both formats.
func TestSyslogTarget(t *testing.T) {
	// A unix socket path must stay under 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "slog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	syslogNetwork, syslogAddr = "unixgram", sock
	t.Cleanup(func() { syslogNetwork, syslogAddr = "", "" })

	cases := []struct {
		name     string
		format   string
		facility string
		tag      string
		level    logrus.Level
		pri      int // facility<<3 | severity, as syslog(3) numbers them
	}{
		{"defaults, warning", "text", defaultSyslogFacility, defaultSyslogTag, logrus.WarnLevel, 3<<3 | 4},
		{"info", "text", "daemon", "sersyncd", logrus.InfoLevel, 3<<3 | 6},
		{"local3, error, json", "json", "local3", "backup-www", logrus.ErrorLevel, 19<<3 | 3},
		{"user, debug", "text", "user", "sx", logrus.DebugLevel, 1<<3 | 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := daemonFlags{logFormat: tc.format, logTarget: logToSyslog, syslogFacility: tc.facility, syslogTag: tc.tag}
			if err := checkLogFlags(f); err != nil {
				t.Fatal(err)
			}
			log, closer, err := openLogger(f, &config.Config{Debug: true}, os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			log.WithField("target", "127.0.0.1::www").Log(tc.level, "push failed: a b")

			buf := make([]byte, 4096)
			if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				t.Fatalf("no syslog datagram: %v", err)
			}
			m := syslogLine.FindStringSubmatch(string(buf[:n]))
			if m == nil {
				t.Fatalf("not a syslog line: %q", buf[:n])
			}
			if pri, _ := strconv.Atoi(m[1]); pri != tc.pri {
				t.Errorf("priority %d, want %d (%q)", pri, tc.pri, buf[:n])
			}
			if m[2] != tc.tag {
				t.Errorf("tag %q, want %q", m[2], tc.tag)
			}
			if pid, _ := strconv.Atoi(m[3]); pid != os.Getpid() {
				t.Errorf("pid %d, want %d", pid, os.Getpid())
			}
			msg := m[4]
			if tc.format == "json" {
				var e map[string]any
				if err := json.Unmarshal([]byte(msg), &e); err != nil {
					t.Fatalf("message is not JSON: %v: %q", err, msg)
				}
				if e["msg"] != "push failed: a b" || e["target"] != "127.0.0.1::www" || e["level"] != tc.level.String() {
					t.Errorf("JSON message %v lacks msg, target or level", e)
				}
				return
			}
			for _, want := range []string{`level=` + tc.level.String(), `msg="push failed: a b"`, `target="127.0.0.1::www"`} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %s", msg, want)
				}
			}
			if strings.Contains(msg, "time=") {
				t.Errorf("message %q repeats the time syslog stamps", msg)
			}
		})
	}
}

func TestFileTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "sersyncd.log")
	f := daemonFlags{logFormat: "text", logTarget: logToFile, logFile: path, syslogFacility: "daemon", syslogTag: "sersyncd"}
	var stderr strings.Builder
	log, closer, err := openLogger(f, &config.Config{}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("started")
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `msg=started`) {
		t.Errorf("log file holds %q", data)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q", stderr.String())
	}
}
