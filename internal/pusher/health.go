package pusher

// Health: a target's failures in a row (pushes in flight together count
// once), the backoff they earn, and the probe that ends a backoff early when a
// target that did not answer comes back.

import (
	"context"
	"math"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/queue"
)

func (tr *targetRunner) succeeded(log logrus.FieldLogger) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.cutOff {
		// A push cut off mid-file may leave a temporary copy of it on the
		// target (rsync's ".name.XXXXXX"); pushing listed paths never
		// removes it, a full push does.
		tr.cutOff = false
		if err := tr.pool.q.AddChanges([]string{tr.target.Name()}, []change.Change{{Path: queue.FullSync}}); err != nil {
			log.WithError(err).Error("queue a full push to clear what a cut-off push left")
		} else {
			log.Info("a push was cut off: pushing the whole tree once to clear its leftovers")
		}
	}
	if tr.failures > 0 {
		log.Infof("recovered after %d failed pushes", tr.failures)
	}
	tr.failures = 0
	tr.lastErr = nil
	tr.lastOK = time.Now()
	tr.retryAt = time.Time{}
	tr.probeAt, tr.probeDown = time.Time{}, false
}

// failed counts a failed push that started when failSeq failures had been
// counted. Pushes that were in flight together (parallel batches, a full
// push beside live ones) found the target in one state: their failures are
// one failure in a row, not one each, or four batches failing in the same
// second took the backoff from 1 s to 8 s, and a minute of it to the cap.
func (tr *targetRunner) failed(log logrus.FieldLogger, err error, failSeq uint64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if OutcomeOf(err) == ConnectionLost {
		tr.cutOff = true
	}
	tr.lastErr = err
	if failSeq != tr.failSeq && tr.failures > 0 {
		log.WithError(err).Warnf("push failed (%d in a row, counted once with a push beside it); retrying in %s",
			tr.failures, time.Until(tr.retryAt).Round(time.Millisecond))
		return
	}
	tr.failSeq++
	tr.failures++
	wait := tr.pool.backoff(tr.failures)
	now := time.Now()
	tr.retryAt = now.Add(wait)
	// Probe at once: whether the target is unreachable now decides whether
	// its return, seen by a later probe, ends the backoff early.
	tr.probeAt, tr.probeDown = now, false
	log.WithError(err).Warnf("push failed (%d in a row); retrying in %s", tr.failures, wait)
}

// backoff is the wait after the n-th failure in a row: BackoffMin doubled
// with every further one, capped by BackoffMax.
func (p *Pool) backoff(n int) time.Duration {
	wait := p.opt.BackoffMin << min(max(n, 1)-1, 20)
	if wait > p.opt.BackoffMax || wait <= 0 {
		wait = p.opt.BackoffMax
	}
	return wait
}

// probeLeft is how long until the target in backoff is probed next; a
// large value when it is not to be probed.
func (tr *targetRunner) probeLeft() time.Duration {
	if _, ok := tr.target.(Prober); !ok || tr.pool.opt.ProbeEvery < 0 {
		return time.Duration(math.MaxInt64)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.probeAt.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Until(tr.probeAt)
}

// probeTimeout bounds one probe.
const defaultProbeTimeout = time.Second

// probe looks whether a target in backoff is reachable. A target that
// answers a probe after one found it unreachable has come back: its
// backoff ends now, however long it was. One that answers from the start
// failed for another reason (auth, a full disk, a module that hangs): its
// backoff runs its course, and it is not probed again until its next
// failure, so a target that is up sees no stream of connections.
func (tr *targetRunner) probe(stop context.Context) {
	ctx, cancel := context.WithTimeout(stop, tr.pool.opt.tune.probeTimeout)
	defer cancel()
	err := tr.target.(Prober).Probe(ctx)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.probeAt.IsZero() {
		return // a push succeeded meanwhile
	}
	log := tr.pool.opt.Log.WithField("target", tr.target.Name())
	switch {
	case err != nil:
		if !tr.probeDown {
			log.WithError(err).Debug("target unreachable; probing it until it answers")
		}
		tr.probeDown = true
		tr.probeAt = time.Now().Add(tr.pool.opt.ProbeEvery)
	case tr.probeDown:
		log.Infof("target answers again after %d failed pushes; pushing now instead of in %s",
			tr.failures, time.Until(tr.retryAt).Round(time.Second))
		tr.retryAt, tr.probeAt, tr.probeDown = time.Time{}, time.Time{}, false
	default:
		tr.probeAt = time.Time{}
	}
}
