package pusher

import (
	"context"
	"errors"

	"github.com/sersyncd/sersyncd/internal/change"
)

// Target is one backup destination. internal/rsync implements it.
type Target interface {
	// Name identifies the target in the queue, logs and metrics.
	Name() string
	// Push makes the changed paths (relative to the source root) on the
	// target equal to the source: existing ones are copied (a Tree change
	// with everything below it), missing ones are deleted there (unless
	// the target keeps what the source deleted).
	Push(ctx context.Context, changes []change.Change) error
	// FullPush makes the whole tree on the target equal to the source,
	// leaving alone what the filter and the extra exclude patterns
	// (the crontab filter's) exclude.
	// A failed Push or FullPush returns a *PushError to say what the
	// failure means to the pool (see OutcomeOf).
	FullPush(ctx context.Context, extraExcludes []string) error
	// Close ends what the target keeps between pushes; a push after it
	// still works, and keeps nothing.
	Close() error
}

// Prober is a target that can tell cheaply whether it is reachable at all.
type Prober interface {
	// Probe returns nil when the target accepts a connection.
	Probe(ctx context.Context) error
}

// Warmer is a target that can make its next push cheaper by getting
// ready ahead of it (rsync's standby: started, connected, waiting for its
// list). The pool warms each target with nothing pending when it starts,
// so the first change after a start costs what later ones do.
type Warmer interface {
	Warm()
}

// Outcome is what the pool needs to know of a push: what it may have left
// on the target, and whether to isolate the paths that failed.
type Outcome int

// The outcomes of a push.
const (
	OK Outcome = iota
	// Partial: some listed paths failed, the rest went. The pool isolates
	// the failing ones by halving the batch.
	Partial
	// ConnectionLost: the connection died, maybe in the middle of a file
	// whose temporary copy stays on the target; once the target is back,
	// a full push clears it.
	ConnectionLost
	// Refused: the push never reached the target (refused, no answer, no
	// greeting), so it left nothing there.
	Refused
	// Failed: any other failure; the target backs off.
	Failed
)

// PushError is a failed push as its target explains it.
type PushError struct {
	Outcome Outcome
	// Code is the target's own code for the failure (for rsync, its exit
	// status) and Meaning what it means: the pool records, logs and counts
	// them as they are and decides nothing on them. Code -1: none.
	Code    int
	Meaning string
	Err     error // the target's own error: its text is the push's
}

func (e *PushError) Error() string { return e.Err.Error() }
func (e *PushError) Unwrap() error { return e.Err }

// OutcomeOf is a push's outcome: OK for no error, the PushError's in err's
// chain, else ConnectionLost, since a failure the target did not explain
// may have cut off a transfer anywhere.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return OK
	}
	var pe *PushError
	if errors.As(err, &pe) {
		return pe.Outcome
	}
	return ConnectionLost
}

// CodeOf is the target's code for a failed push and what it means; ok is
// false when the target gave none.
func CodeOf(err error) (code int, meaning string, ok bool) {
	var pe *PushError
	if errors.As(err, &pe) && pe.Code >= 0 {
		return pe.Code, pe.Meaning, true
	}
	return -1, "", false
}
