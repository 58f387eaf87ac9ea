package rsync

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/sersyncd/sersyncd/internal/pusher"
)

// What rsync's exit codes mean: to a person (exitMeanings, as rsync's
// manual words them), to the pool (pushError's pusher.Outcome), and to the
// standby (lostConnection).

// ExitError is a push that rsync ended with a non-zero exit code.
type ExitError struct {
	Code   int
	Stderr string // the tail of rsync's stderr
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("rsync exit %d (%s)", e.Code, ExitMeaning(e.Code))
	if line := lastLine(e.Stderr); line != "" {
		s += ": " + line
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	// The daemon's own refusal ("@ERROR: auth failed on module x",
	// "ERROR: module is read only") says why; what follows it is only the
	// connection going down.
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "@ERROR") || strings.HasPrefix(l, "ERROR:") {
			return l
		}
	}
	// rsync ends with a summary line ("rsync error: ... (code N) at ..."):
	// the line before it usually says what actually went wrong.
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "rsync error:") {
			return l
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// ExitMeaning names rsync's exit codes as its manual does.
func ExitMeaning(code int) string {
	if m, ok := exitMeanings[code]; ok {
		return m
	}
	return "unknown rsync exit code"
}

var exitMeanings = map[int]string{
	0:   "success",
	1:   "syntax or usage error",
	2:   "protocol incompatibility",
	3:   "errors selecting input/output files, dirs",
	4:   "requested action not supported",
	5:   "error starting client-server protocol",
	6:   "daemon unable to append to log-file",
	10:  "error in socket I/O",
	11:  "error in file I/O",
	12:  "error in rsync protocol data stream",
	13:  "errors with program diagnostics",
	14:  "error in IPC code",
	20:  "received SIGUSR1 or SIGINT",
	21:  "some error returned by waitpid()",
	22:  "error allocating core memory buffers",
	23:  "partial transfer due to error",
	24:  "partial transfer due to vanished source files",
	25:  "the --max-delete limit stopped deletions",
	30:  "timeout in data send/receive",
	35:  "timeout waiting for daemon connection",
	255: "ssh connection failed or remote command error",
}

// exitError is cmd.Wait's err as rsync's: an *ExitError holding the last
// tail bytes of stderr, or nil for exit 24 (source files vanished during
// the run: each vanishing is an event of its own, pushed as a deletion
// after it). ok is false when rsync had no exit code (killed, not run).
func exitError(err error, stderr []byte, tail int) (_ error, ok bool) {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() < 0 {
		return nil, false
	}
	code := exitErr.ExitCode()
	if code == 24 {
		return nil, true
	}
	if len(stderr) > tail {
		stderr = stderr[len(stderr)-tail:]
	}
	return &ExitError{Code: code, Stderr: strings.TrimSpace(string(stderr))}, true
}

// cutOffCodes are rsync's exit codes of a connection that died, maybe in
// the middle of a file.
var cutOffCodes = map[int]bool{10: true, 12: true, 20: true, 30: true, 35: true, 255: true}

// neverConnected reports whether a failed push ended before it reached the
// target (refused, no route, no daemon greeting): it can have left nothing
// there. Told apart from a connection that died by rsync's and ssh's own
// lines; a push to a daemon that was down cost a full push of the tree
// after it came back (27 s for 100,000 directories under load).
func neverConnected(e *ExitError) bool {
	switch e.Code {
	case 35: // timeout waiting for daemon connection
		return true
	case 10: // "rsync: [sender] failed to connect to HOST (IP): Connection refused (111)"
		return strings.Contains(e.Stderr, "failed to connect to ")
	case 255: // "ssh: connect to host HOST port 22: Connection refused"
		return strings.Contains(e.Stderr, "ssh: connect to host ")
	}
	return false
}

// outcome is what the exit code means to the pool.
func (e *ExitError) outcome() pusher.Outcome {
	switch {
	case e.Code == 23:
		return pusher.Partial
	case neverConnected(e):
		return pusher.Refused
	case cutOffCodes[e.Code]:
		return pusher.ConnectionLost
	}
	return pusher.Failed
}

// pushError wraps a failed push's error for the pool: its outcome, rsync's
// exit code and its meaning; the text stays rsync's.
func pushError(err error) error {
	if err == nil {
		return nil
	}
	pe := &pusher.PushError{Outcome: pusher.ConnectionLost, Code: -1, Err: err}
	var exitErr *ExitError
	if errors.As(err, &exitErr) {
		pe.Code, pe.Meaning = exitErr.Code, ExitMeaning(exitErr.Code)
		pe.Outcome = exitErr.outcome()
	}
	// An rsync that ended without an exit code (killed, or never started)
	// may have been cut off anywhere, as far as anyone can tell. A standby
	// whose connection died with its list in hand may have been cut off
	// too, whatever the fresh rsync's exit says; but a partial transfer of
	// the fresh one stays partial, so its batch is still split (as before
	// the move; the standby's leftovers then wait for the next full push).
	var standbyLost *standbyLostError
	if errors.As(err, &standbyLost) && pe.Outcome != pusher.Partial {
		pe.Outcome = pusher.ConnectionLost
	}
	return pe
}

// standbyLostError is a push whose standby lost its connection with the
// list in hand, and whose fresh retry failed too: the retry's error, and
// the knowledge that a transfer may have been cut off.
type standbyLostError struct {
	err, standby error
}

func (e *standbyLostError) Error() string { return e.err.Error() }
func (e *standbyLostError) Unwrap() error { return e.err }

// lostConnection reports whether a push failed because its connection was
// gone (socket error, protocol stream cut, ssh gone), as a standby's is
// when the daemon dropped it during the wait; not a timeout, which a fresh
// rsync would only wait for again.
func lostConnection(err error) bool {
	var exitErr *ExitError
	if !errors.As(err, &exitErr) {
		return false
	}
	switch exitErr.Code {
	case 10, 12, 255:
		return true
	}
	return false
}
