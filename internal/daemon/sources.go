package daemon

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/rsync"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/metrics"
	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/watch"
)

// source is one watched tree (a <localpath>) with its filter and targets.
// A target belongs to one source: its name, the destination, is unique
// across sources (config refuses a shared one), and the paths queued for it
// are relative to its source's root.
type source struct {
	cfg     *config.Source
	flt     *filter.Filter
	targets []pusher.Target
	names   []string
}

// buildSources makes each source's filter and targets; hook, when not nil,
// connects each target to the daemon's metrics and progress. targets and
// names are every source's, in config order.
func buildSources(c *config.Config, hook func(*rsync.Options)) (srcs []*source, targets []pusher.Target, names []string, err error) {
	for i := range c.Sources {
		cs := &c.Sources[i]
		flt, err := sourceFilter(cs)
		if err != nil {
			return nil, nil, nil, err
		}
		s := &source{cfg: cs, flt: flt}
		for _, t := range RsyncTargets(c, cs, flt, hook) {
			s.targets = append(s.targets, t)
			s.names = append(s.names, t.Name())
		}
		srcs = append(srcs, s)
		targets = append(targets, s.targets...)
		names = append(names, s.names...)
	}
	return srcs, targets, names, nil
}

// sourceFilter is the filter of a tree: its expressions and rsync rules.
func sourceFilter(cs *config.Source) (*filter.Filter, error) {
	flt, err := filter.NewWithRules(cs.Excludes(), cs.RsyncRules.Rules)
	if err != nil {
		return nil, fmt.Errorf("build filter of %s: %w", cs.Path, err)
	}
	return flt, nil
}

// targetSources maps each target's name to the root of its tree.
func targetSources(srcs []*source) map[string]string {
	m := map[string]string{}
	for _, s := range srcs {
		for _, n := range s.names {
			m[n] = s.cfg.Path
		}
	}
	return m
}

// movedTarget says which target old and new push from different trees
// ("" when none): its queued paths are relative to the old tree, so
// pushing them from the new one would copy the wrong files or delete
// right ones.
func movedTarget(old, new []*source) string {
	was := targetSources(old)
	for name, root := range targetSources(new) {
		if r, ok := was[name]; ok && r != root {
			return fmt.Sprintf("target %s is pushed from %s and the new config pushes it from %s", name, r, root)
		}
	}
	return ""
}

// isNew reports whether s's tree was not in old.
func isNew(s *source, old []*source) bool {
	for _, o := range old {
		if o.cfg.Path == s.cfg.Path {
			return false
		}
	}
	return true
}

// filterChanged reports whether s's filter differs from the one its tree
// had in old (a tree old did not have: false, nothing was excluded before).
func filterChanged(s *source, old []*source) bool {
	for _, o := range old {
		if o.cfg.Path == s.cfg.Path {
			return !slices.Equal(s.cfg.Excludes(), o.cfg.Excludes()) ||
				!bytes.Equal(s.cfg.RsyncRules.Rules.NULList(), o.cfg.RsyncRules.Rules.NULList())
		}
	}
	return false
}

// sourceSink is the queue as one tree's watcher sees it: what it commits
// and the full pushes it asks for go to that tree's targets only.
type sourceSink struct {
	q    *queue.Queue
	m    *metrics.Metrics
	srcs []*source // every tree, to know whether to name this one
	src  *source
}

func (s sourceSink) Add(changes []change.Change) error {
	if err := s.q.AddChanges(s.src.names, changes); err != nil {
		return err
	}
	s.m.Queued(len(changes))
	return nil
}

func (s sourceSink) MarkMissed(why string) error {
	return s.q.MarkMissedTargets(missedIn(s.srcs, s.src, why), s.src.names)
}

// missedIn is why changes of src may have been missed, naming the tree
// when there are several ("/srv/a: the inotify queue overflowed").
func missedIn(srcs []*source, src *source, why string) string {
	if len(srcs) > 1 {
		return src.cfg.Path + ": " + why
	}
	return why
}

// watchSet is the running watchers, one per source, started and stopped
// together.
type watchSet struct {
	srcs []*source
	ws   []*watch.Watcher

	stop  context.CancelFunc
	wg    sync.WaitGroup
	ended chan struct{} // closed once the first watcher has returned
	once  sync.Once

	mu     sync.Mutex
	err    error   // the first watcher error
	errSrc *source // the tree it came from
}

func (s *watchSet) start() {
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.ended = stop, make(chan struct{})
	for i, w := range s.ws {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := w.Run(ctx)
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err, s.errSrc = err, s.srcs[i]
			}
			s.mu.Unlock()
			s.once.Do(func() { close(s.ended) })
		}()
	}
}

// discard releases watchers that never ran: Run with an ended context
// closes a watcher's inotify instance (committing whatever it saw).
func (s *watchSet) discard() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, w := range s.ws {
		_ = w.Run(ctx)
	}
}

// Stop ends every watcher, each committing what it has seen, and returns
// the first error and its tree.
func (s *watchSet) Stop() (*source, error) {
	s.stop()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.errSrc, s.err
}

// Dirs is the number of watched directories, over every tree.
func (s *watchSet) Dirs() int {
	n := 0
	for _, w := range s.ws {
		n += w.Dirs()
	}
	return n
}

// Overflows is the number of inotify overflows, over every tree.
func (s *watchSet) Overflows() int {
	n := 0
	for _, w := range s.ws {
		n += w.Overflows()
	}
	return n
}

// Degraded says which trees have directories without a watch, and why;
// "" when none has.
func (s *watchSet) Degraded() string {
	var why []string
	for i, w := range s.ws {
		if deg := w.Degraded(); deg != nil {
			if len(s.ws) == 1 {
				return deg.Error()
			}
			why = append(why, s.srcs[i].cfg.Path+": "+deg.Error())
		}
	}
	return strings.Join(why, "; ")
}
