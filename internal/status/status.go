// Package status holds the one snapshot of a target that `status`, the
// control socket and the metrics all read. The pool fills its health, the
// daemon the queue's counts and the last verify; control sends it as JSON
// as it is (the field names are `status --json`'s), metrics reads it for
// its gauges and /healthz.
package status

import "time"

// Target is a snapshot of one target.
type Target struct {
	Name                string    `json:"name"`
	Source              string    `json:"source"` // the root of the tree it is pushed from
	Pending             int       `json:"pending"`
	Failed              int       `json:"failed"`
	OldestPending       time.Time `json:"oldest_pending,omitzero"`
	LagSeconds          float64   `json:"lag_seconds"` // age of the oldest pending change
	LastSuccess         time.Time `json:"last_success,omitzero"`
	LastError           string    `json:"last_error,omitempty"`
	ConsecutiveFailures int       `json:"consecutive_failures,omitempty"`
	RetryAt             time.Time `json:"retry_at,omitzero"`
	// FullPushRunning is the pool's alone: not part of `status --json`.
	FullPushRunning bool `json:"-"`
	// Verify is the last scheduled verify of the target, when one ran.
	Verify *Verify `json:"verify,omitempty"`
}

// Lag is LagSeconds as a duration.
func (t Target) Lag() time.Duration { return time.Duration(t.LagSeconds * float64(time.Second)) }

// Verify is the outcome of a target's last scheduled verify.
type Verify struct {
	Time        time.Time `json:"time"`                  // when it ran
	Checksum    bool      `json:"checksum"`              // contents compared, not size and mtime
	Drift       int       `json:"drift"`                 // paths that differ: missing + differing + extra
	Missing     int       `json:"missing"`               //
	Differing   int       `json:"differing"`             //
	Extra       int       `json:"extra"`                 //
	Kept        int       `json:"kept,omitempty"`        // on the target alone, kept: delete is off
	Repaired    int       `json:"repaired,omitempty"`    // paths queued by verifyRepair
	Error       string    `json:"error,omitempty"`       // why it could not check the target
	LastSuccess time.Time `json:"last_success,omitzero"` // the last run that could check it
}
