package verify

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sersyncd/sersyncd/internal/rsync"

	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"
)

// Last is what a target's last scheduled verify found.
type Last struct {
	Result      *Result   // its entries dropped: the counts stay
	Repaired    int       // paths queued by the repair
	LastSuccess time.Time // the last run that could check the target
	// Drift is what the last run that could check the target found: one
	// that could not (the target was down) says nothing about it.
	Drift int
}

// Store keeps the last result per target, across reloads; safe for
// concurrent use.
type Store struct {
	mu   sync.Mutex
	last map[string]Last
}

// NewStore makes an empty store.
func NewStore() *Store { return &Store{last: map[string]Last{}} }

// Get returns the target's last result; ok is false when none ran yet.
func (s *Store) Get(target string) (last Last, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last, ok = s.last[target]
	return last, ok
}

func (s *Store) set(r *Result, repaired int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.last[r.Target]
	l := Last{Result: r, Repaired: repaired, LastSuccess: prev.LastSuccess, Drift: prev.Drift}
	if r.Error == "" {
		l.LastSuccess, l.Drift = r.Started, r.Drift()
	}
	s.last[r.Target] = l
}

// Repair queues paths as changes of a target.
type Repair func(target string, paths []string) (int, error)

// Pending returns the paths queued and not yet pushed for target; full is
// true when a push of the whole tree is among them.
type Pending func(target string) (paths map[string]bool, full bool, err error)

// ScheduleOptions configures a Schedule.
type ScheduleOptions struct {
	Every   time.Duration
	Options Options
	Targets []*rsync.Target
	// Repair, when set, queues what each run finds.
	Repair Repair
	// Pending, when set, tells which differences are changes the pushers
	// have not made yet: those are not drift.
	Pending Pending
	Store   *Store
	Log     logrus.FieldLogger
}

// Schedule runs a verify of every target, one after the other, on a
// schedule, beside the live pushes; a run is skipped while the previous
// one still runs.
type Schedule struct {
	cron   *cron.Cron
	cancel context.CancelFunc
}

// NewSchedule builds, but does not start, a verify of every target.
func NewSchedule(o ScheduleOptions) (*Schedule, error) {
	ctx, cancel := context.WithCancel(context.Background())
	log := o.Log
	c := cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger), cron.Recover(cron.DiscardLogger)))
	job := func() {
		for _, t := range o.Targets {
			if ctx.Err() != nil {
				return
			}
			r := Target(ctx, t, o.Options)
			if ctx.Err() != nil {
				return // stopped midway: not a verdict
			}
			if o.Pending != nil && r.Error == "" && r.Drift() > 0 {
				paths, full, err := o.Pending(r.Target)
				switch {
				case err != nil:
					r.Notes = append(r.Notes, "queued changes not told apart: "+err.Error())
				case full:
					log.WithField("target", r.Target).Info("verify: a full push is queued for the target; this run says nothing")
					continue
				default:
					r.DropPending(paths)
				}
			}
			repaired := 0
			if o.Repair != nil && r.Error == "" && r.Drift() > 0 {
				n, err := o.Repair(r.Target, r.RepairPaths())
				if err != nil {
					log.WithField("target", r.Target).WithError(err).Error("verify: queue the repair")
				}
				repaired = n
			}
			logResult(log, r, repaired)
			r.Entries = nil // the counts are what status and metrics show
			o.Store.set(r, repaired)
		}
	}
	if _, err := c.AddFunc("@every "+o.Every.String(), job); err != nil {
		cancel()
		return nil, err
	}
	return &Schedule{cron: c, cancel: cancel}, nil
}

// Start starts the schedule.
func (s *Schedule) Start() { s.cron.Start() }

// Stop ends the schedule and a running verify; the returned context ends
// once it has.
func (s *Schedule) Stop() context.Context {
	s.cancel()
	return s.cron.Stop()
}

// logExamples is how many drifted paths a log line names.
const logExamples = 5

func logResult(log logrus.FieldLogger, r *Result, repaired int) {
	l := log.WithFields(logrus.Fields{"target": r.Target, "duration": time.Duration(r.Seconds * float64(time.Second)).Round(time.Millisecond)})
	switch {
	case r.Error != "":
		l.Warnf("verify: could not check the target: %s", r.Error)
	case r.Drift() == 0:
		l.Info("verify: the target equals the source")
	default:
		var ex []string
		for _, e := range r.Entries {
			if e.Kind != rsync.Kept && len(ex) < logExamples {
				ex = append(ex, string(e.Kind)+" "+strconv.Quote(e.Path))
			}
		}
		msg := "verify: the target differs from the source: " + Counts(r) + ", e.g. " + strings.Join(ex, ", ")
		if repaired > 0 {
			msg += "; queued " + strconv.Itoa(repaired) + " paths to repair it"
		}
		l.WithField("drift", r.Drift()).Warn(msg)
	}
}

// Counts says how many paths of each kind r found, e.g. "1 missing, 2
// differing, 0 extra".
func Counts(r *Result) string {
	s := strconv.Itoa(r.Missing) + " missing, " + strconv.Itoa(r.Differing) + " differing, " + strconv.Itoa(r.Extra) + " extra"
	if r.Kept > 0 {
		s += " (" + strconv.Itoa(r.Kept) + " more kept: delete is off)"
	}
	return s
}
