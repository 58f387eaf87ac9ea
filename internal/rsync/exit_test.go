package rsync

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sersyncd/sersyncd/internal/pusher"
)

// What each failed rsync means to the pool. A push that never reached the
// target left nothing there: its recovery needs no full push. One whose
// connection died may have left temp files (pusher's
// TestPoolFullPushAfterCutOffOnly: what the pool does with each).
func TestExitOutcome(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		want    pusher.Outcome
		code    int
		meaning string
		text    string
	}{
		{"daemon refused", &ExitError{Code: 10, Stderr: "rsync: [sender] failed to connect to 10.0.0.1 (10.0.0.1): Connection refused (111)\nrsync error: error in socket IO (code 10) at clientserver.c(139) [sender=3.2.7]"},
			pusher.Refused, 10, "error in socket I/O", "rsync exit 10 (error in socket I/O): rsync: [sender] failed to connect to 10.0.0.1 (10.0.0.1): Connection refused (111)"},
		{"no daemon greeting", &ExitError{Code: 35}, pusher.Refused, 35, "timeout waiting for daemon connection", "rsync exit 35 (timeout waiting for daemon connection)"},
		{"ssh refused", &ExitError{Code: 255, Stderr: "ssh: connect to host 10.0.0.1 port 22: Connection refused\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]"},
			pusher.Refused, 255, "ssh connection failed or remote command error", "rsync exit 255 (ssh connection failed or remote command error): rsync: connection unexpectedly closed (0 bytes received so far) [sender]"},
		{"connection died", &ExitError{Code: 12, Stderr: "rsync: connection unexpectedly closed (123 bytes received so far) [sender]"},
			pusher.ConnectionLost, 12, "error in rsync protocol data stream", "rsync exit 12 (error in rsync protocol data stream): rsync: connection unexpectedly closed (123 bytes received so far) [sender]"},
		{"socket error mid-transfer", &ExitError{Code: 10, Stderr: "rsync: read error: Connection reset by peer (104)"},
			pusher.ConnectionLost, 10, "error in socket I/O", "rsync exit 10 (error in socket I/O): rsync: read error: Connection reset by peer (104)"},
		{"timeout", &ExitError{Code: 30}, pusher.ConnectionLost, 30, "timeout in data send/receive", "rsync exit 30 (timeout in data send/receive)"},
		{"partial, wrapped", fmt.Errorf("list deletions: %w", &ExitError{Code: 23, Stderr: `rsync: [sender] send_files failed to open "bad": Permission denied (13)`}),
			pusher.Partial, 23, "partial transfer due to error", `list deletions: rsync exit 23 (partial transfer due to error): rsync: [sender] send_files failed to open "bad": Permission denied (13)`},
		{"auth failed", &ExitError{Code: 5, Stderr: "@ERROR: auth failed on module backup\nrsync error: error starting client-server protocol (code 5)"},
			pusher.Failed, 5, "error starting client-server protocol", "rsync exit 5 (error starting client-server protocol): @ERROR: auth failed on module backup"},
		{"unknown code", &ExitError{Code: 99}, pusher.Failed, 99, "unknown rsync exit code", "rsync exit 99 (unknown rsync exit code)"},
		{"standby lost, then refused", &standbyLostError{err: &ExitError{Code: 10, Stderr: "rsync: failed to connect to h (h): Connection refused (111)"}, standby: &ExitError{Code: 12}},
			pusher.ConnectionLost, 10, "error in socket I/O", "rsync exit 10 (error in socket I/O): rsync: failed to connect to h (h): Connection refused (111)"},
		{"standby lost, then partial", &standbyLostError{err: &ExitError{Code: 23}, standby: &ExitError{Code: 12}},
			pusher.Partial, 23, "partial transfer due to error", "rsync exit 23 (partial transfer due to error)"},
		{"no exit code", errors.New("run rsync: signal: killed"), pusher.ConnectionLost, -1, "", "run rsync: signal: killed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := pushError(tc.err)
			if got := pusher.OutcomeOf(err); got != tc.want {
				t.Errorf("outcome %d, want %d", got, tc.want)
			}
			code, meaning, _ := pusher.CodeOf(err)
			if code != tc.code || meaning != tc.meaning {
				t.Errorf("code %d (%s), want %d (%s)", code, meaning, tc.code, tc.meaning)
			}
			if err.Error() != tc.text {
				t.Errorf("text %q, want %q", err.Error(), tc.text)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not wrap %v", err, tc.err)
			}
		})
	}
	if pushError(nil) != nil {
		t.Error("pushError(nil) is not nil")
	}
}
