package daemon

import (
	"testing"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/metrics"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// TestSourceSinkScopesToItsTree: what one tree's watcher commits, and the
// full push it asks for after missing changes, go to that tree's targets
// only; the reason names the tree when there are several.
func TestSourceSinkScopesToItsTree(t *testing.T) {
	q, _ := testutil.OpenQueue(t, queue.Open, "", "h::a0", "h::a1", "h::b0")
	a := &source{cfg: &config.Source{Path: "/srv/a"}, names: []string{"h::a0", "h::a1"}}
	b := &source{cfg: &config.Source{Path: "/srv/b"}, names: []string{"h::b0"}}
	srcs := []*source{a, b}
	sinkA := sourceSink{q: q, m: metrics.New(nil), srcs: srcs, src: a}
	if err := sinkA.Add(change.Of([]string{"x"})); err != nil {
		t.Fatal(err)
	}
	if err := sinkA.MarkMissed("the inotify queue overflowed"); err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]int{"h::a0": 2, "h::a1": 2, "h::b0": 0} {
		if got := q.Pending(target); got != want {
			t.Errorf("pending %s = %d, want %d (x and a full push for tree A's targets, nothing for B's)", target, got, want)
		}
	}
	if why, _ := q.MissedNow(); why != "/srv/a: the inotify queue overflowed" {
		t.Errorf("missed = %q, want the reason naming tree A", why)
	}
	if got := missedIn(srcs[:1], a, "why"); got != "why" {
		t.Errorf("one tree: reason %q, want it unchanged", got)
	}
}

func TestMovedTarget(t *testing.T) {
	src := func(path string, names ...string) *source {
		return &source{cfg: &config.Source{Path: path}, names: names}
	}
	tests := []struct {
		name     string
		old, new []*source
		want     string
	}{
		{"unchanged", []*source{src("/a", "t1")}, []*source{src("/a", "t1")}, ""},
		{"tree added and removed", []*source{src("/a", "t1"), src("/b", "t2")}, []*source{src("/a", "t1"), src("/c", "t3")}, ""},
		{"target moved", []*source{src("/a", "t1", "t2")}, []*source{src("/a", "t1"), src("/b", "t2")},
			"target t2 is pushed from /a and the new config pushes it from /b"},
		{"localpath changed", []*source{src("/a", "t1")}, []*source{src("/b", "t1")},
			"target t1 is pushed from /a and the new config pushes it from /b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := movedTarget(tt.old, tt.new); got != tt.want {
				t.Errorf("movedTarget = %q, want %q", got, tt.want)
			}
		})
	}
}
