package rsync

import (
	"context"
	"time"
)

// A push's fixed cost is mostly rsync starting: the process, its
// connection to the daemon (or ssh's), the module's greeting and auth. An
// rsync given --files-from=- does all of that before it reads its list, so
// one started ahead and left waiting on stdin pushes the next change in
// the time the transfer itself takes: 9 ms here, against 33 ms for an
// rsync started when the change is due.
//
// One is kept per target, only while the target is in use: after a push
// that succeeded, for Options.Standby. Unused by then, it is given an
// empty list and ends cleanly (the daemon logs a session that moved
// nothing), well before rsync's own --timeout or a module's "timeout"
// would cut it. One that lost its connection anyway (the daemon restarted)
// mostly learns so only when it is handed its list and fails at once: the
// push is then tried once more with a fresh rsync. One found dead before
// that is dropped.

// retireTimeout bounds the end of an unused standby rsync, which a healthy
// daemon takes milliseconds for: a graceful stop waits for it.
var retireTimeout = 2 * time.Second

// takeStandby hands over the standby rsync, if there is one still alive.
func (t *Target) takeStandby() *rsyncProc {
	t.mu.Lock()
	p := t.standby
	t.standby = nil
	t.mu.Unlock()
	if p == nil {
		return nil
	}
	p.idle.Stop()
	if p.exited() {
		p.list.Close()
		return nil // it lost its connection while it waited; it pushed nothing
	}
	return p
}

// pushed starts the next standby after a push that succeeded; a failing
// target gets none, so a dead one is not dialled twice per attempt.
func (t *Target) pushed(err error) {
	if err != nil || t.opt.Standby <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.standby != nil {
		return
	}
	p, err := t.start(t.PushArgs())
	if err != nil {
		return // the next push starts its own rsync, and reports why it cannot
	}
	p.idle = time.AfterFunc(t.opt.Standby, func() { t.retire(p) })
	t.standby = p
}

// Warm starts a standby when the target has none, as a push that
// succeeded does: without it the first change after a start waited for a
// whole rsync start-up (the saved-again workload's first save took 30.6 ms
// at K = 3 against 10.0 ms for the later ones, build 927e253). An
// unreachable target's standby dies at once and is dropped when taken.
func (t *Target) Warm() { t.pushed(nil) }

// retire ends standby p if it is still unused.
func (t *Target) retire(p *rsyncProc) {
	t.mu.Lock()
	if t.standby != p {
		t.mu.Unlock()
		return
	}
	t.standby = nil
	t.mu.Unlock()
	p.end()
}

// end gives an unused rsync an empty list, so it ends without an error on
// either side; one that does not end in time is killed.
func (p *rsyncProc) end() {
	ctx, cancel := context.WithTimeout(context.Background(), retireTimeout)
	defer cancel()
	_ = p.finish(ctx, nil)
}

// Close ends the standby rsync; no new one is started after it.
func (t *Target) Close() error {
	t.mu.Lock()
	t.closed = true
	p := t.standby
	t.standby = nil
	t.mu.Unlock()
	if p != nil {
		p.idle.Stop()
		p.end()
	}
	return nil
}
