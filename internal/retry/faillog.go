package retry

// The failLog: one line per failed push, for people to read, every name
// quoted so that nothing in it runs in a shell.

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/safefile"
)

// failLogMaxBytes is the size at which the failLog is rotated; three old
// files are kept.
const failLogMaxBytes = 10 << 20

// failLogPaths caps the paths written per failed batch (FailLog.maxPaths).
const failLogPaths = 100

// FailLog writes one line per failed push.
type FailLog struct {
	mu  sync.Mutex
	out io.WriteCloser
	now func() time.Time
	log logrus.FieldLogger
	// maxPaths is failLogPaths; a field so a test can lower it for itself.
	maxPaths int
}

var _ pusher.Observer = (*FailLog)(nil)

// CheckFailLog says why path must not be the failLog (a symbolic link, a
// directory anyone may replace it in, ...), or nil.
func CheckFailLog(path string) error {
	if err := safefile.Check(path); err != nil {
		return fmt.Errorf("failLog %w", err)
	}
	return nil
}

// OpenFailLog appends to path from the first failure on, rotating it by
// size; it never writes through a symbolic link (see safefile). A line it
// cannot write is reported to log.
func OpenFailLog(path string, log logrus.FieldLogger) *FailLog {
	return openFailLog(path, log, failLogMaxBytes)
}

// openFailLog is OpenFailLog rotating at maxBytes, which a test lowers.
func openFailLog(path string, log logrus.FieldLogger, maxBytes int64) *FailLog {
	return &FailLog{
		out:      &safefile.Rotating{Path: path, MaxBytes: maxBytes, Backups: 3, Perm: 0o600},
		now:      time.Now,
		log:      log,
		maxPaths: failLogPaths,
	}
}

// Pushed writes a line for a failed push:
//
//	# 2026-11-22T03:40:00Z target="127.0.0.1::backup" exit=10 (error in socket I/O) paths=2 reason="..." "a b" "c\nd"
//
// Every path is quoted as a Go string literal: one line per batch whatever
// the names hold, and nothing a shell would run.
func (f *FailLog) Pushed(target string, paths []string, _ time.Duration, err error) {
	if err == nil {
		return
	}
	var b strings.Builder
	// sersync ran its failLog as a script (and people still may); a line that starts with
	// "#" and quotes every name without "$" or "`" does nothing in a shell.
	b.WriteString("# ")
	b.WriteString(f.now().UTC().Format(time.RFC3339))
	b.WriteString(" target=")
	b.WriteString(quote(target))
	if code, meaning, ok := pusher.CodeOf(err); ok {
		fmt.Fprintf(&b, " exit=%d (%s)", code, meaning)
	} else {
		b.WriteString(" exit=none")
	}
	fmt.Fprintf(&b, " paths=%d reason=%s", len(paths), quote(err.Error()))
	for i, p := range paths {
		if i == f.maxPaths {
			fmt.Fprintf(&b, " ...and %d more", len(paths)-i)
			break
		}
		b.WriteByte(' ')
		b.WriteString(quote(p))
	}
	b.WriteByte('\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := io.WriteString(f.out, b.String()); err != nil {
		f.log.WithError(err).Error("write failLog")
	}
}

// quote writes s as a Go string literal (strconv.Unquote reads it back)
// in which a shell finds nothing to expand.
func quote(s string) string {
	return shellInert.Replace(strconv.Quote(s))
}

var shellInert = strings.NewReplacer("$", `\x24`, "`", `\x60`)

// Close closes the file.
func (f *FailLog) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.out.Close()
}
