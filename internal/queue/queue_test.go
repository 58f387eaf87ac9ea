package queue

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

func mustAdd(t *testing.T, q *Queue, paths ...string) {
	t.Helper()
	if err := q.Add(paths); err != nil {
		t.Fatalf("Add(%q): %v", paths, err)
	}
}

func mustClaim(t *testing.T, q *Queue, target string, max int) []Item {
	t.Helper()
	items, err := q.Claim(target, max)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", target, max, err)
	}
	return items
}

func mustAck(t *testing.T, q *Queue, target string, items []Item) {
	t.Helper()
	if err := q.Ack(target, items); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

func paths(items []Item) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.Path)
	}
	return out
}

func claimPaths(t *testing.T, q *Queue, target string, max int) []string {
	t.Helper()
	return paths(mustClaim(t, q, target, max))
}

func records(t *testing.T, q *Queue, target string) ([]string, map[string]Record) {
	t.Helper()
	order := []string{}
	recs := map[string]Record{}
	err := q.Records(target, func(p string, r Record) bool {
		order = append(order, p)
		recs[p] = r
		return true
	})
	if err != nil {
		t.Fatalf("Records(%s): %v", target, err)
	}
	return order, recs
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func TestClaimOrderAndMax(t *testing.T) {
	tests := []struct {
		name string
		adds [][]string // one Add call each
		max  int
		want []string
	}{
		{"oldest first across calls", [][]string{{"c"}, {"a"}, {"b"}}, 10, []string{"c", "a", "b"}},
		{"oldest first within a call", [][]string{{"z", "y", "x"}}, 10, []string{"z", "y", "x"}},
		{"max limits the batch", [][]string{{"c", "a", "b", "d"}}, 2, []string{"c", "a"}},
		{"max of one", [][]string{{"c", "a"}}, 1, []string{"c"}},
		// A re-added path keeps its place: it has been waiting since its first change.
		{"re-add keeps first position", [][]string{{"a"}, {"b"}, {"a"}}, 10, []string{"a", "b"}},
		{"nothing pending", nil, 10, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "t")
			for _, a := range tc.adds {
				mustAdd(t, q, a...)
			}
			equal(t, "claimed", claimPaths(t, q, "t", tc.max), tc.want)
		})
	}
}

func TestRepeatedAddIsOneRecord(t *testing.T) {
	const n = 1000
	tests := []struct {
		name string
		add  func(t *testing.T, q *Queue)
	}{
		{"one call", func(t *testing.T, q *Queue) {
			ps := make([]string, n)
			for i := range ps {
				ps[i] = "dir/file"
			}
			mustAdd(t, q, ps...)
		}},
		{"separate calls", func(t *testing.T, q *Queue) {
			for range n {
				mustAdd(t, q, "dir/file")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "t")
			tc.add(t, q)
			if got := q.Pending("t"); got != 1 {
				t.Fatalf("Pending = %d, want 1", got)
			}
			items := mustClaim(t, q, "t", 10)
			equal(t, "claimed", paths(items), []string{"dir/file"})
			if items[0].Gen != n {
				t.Errorf("Gen = %d, want %d (one per change)", items[0].Gen, n)
			}
			equal(t, "second claim", claimPaths(t, q, "t", 10), []string{})
			mustAck(t, q, "t", items)
			if got := q.Pending("t"); got != 0 {
				t.Fatalf("Pending after Ack = %d, want 0", got)
			}
		})
	}
}

func TestAckRemovesRecords(t *testing.T) {
	q, path := testutil.OpenQueue(t, Open, "", "t")
	mustAdd(t, q, "a", "b", "c")
	items := mustClaim(t, q, "t", 10)
	if got := q.Pending("t"); got != 3 {
		t.Fatalf("Pending with all in flight = %d, want 3 (in flight counts)", got)
	}
	mustAck(t, q, "t", items[:2])
	if got := q.Pending("t"); got != 1 {
		t.Fatalf("Pending after acking 2 of 3 = %d, want 1", got)
	}
	// A second Ack of the same items must not count them twice.
	mustAck(t, q, "t", items[:2])
	if got := q.Pending("t"); got != 1 {
		t.Fatalf("Pending after repeated Ack = %d, want 1", got)
	}
	order, _ := records(t, q, "t")
	equal(t, "records", order, []string{"c"})

	if err := q.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	q2, _ := testutil.OpenQueue(t, Open, path, "t")
	if got := q2.Pending("t"); got != 1 {
		t.Fatalf("Pending after reopen = %d, want 1", got)
	}
	order, _ = records(t, q2, "t")
	equal(t, "records after reopen", order, []string{"c"})
	equal(t, "claim after reopen", claimPaths(t, q2, "t", 10), []string{"c"})
}

// The "changed during push" case: the push may have read the old content,
// so its Ack must not remove the newer change.
func TestChangeDuringPushSurvivesAck(t *testing.T) {
	tests := []struct {
		name   string
		finish func(q *Queue, items []Item) error
	}{
		{"ack", func(q *Queue, items []Item) error { return q.Ack("t", items) }},
		{"fail", func(q *Queue, items []Item) error { return q.Fail("t", items, Failure{ExitCode: 10, Error: "x"}) }},
		{"release", func(q *Queue, items []Item) error { q.Release("t", items); return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "t")
			mustAdd(t, q, "f")
			old := mustClaim(t, q, "t", 10)
			mustAdd(t, q, "f")
			equal(t, "claim while in flight", claimPaths(t, q, "t", 10), []string{})
			if err := tc.finish(q, old); err != nil {
				t.Fatal(err)
			}
			if got := q.Pending("t"); got != 1 {
				t.Fatalf("Pending = %d, want 1", got)
			}
			again := mustClaim(t, q, "t", 10)
			equal(t, "claim after finish", paths(again), []string{"f"})
			if again[0].Gen <= old[0].Gen {
				t.Fatalf("Gen = %d, want > %d", again[0].Gen, old[0].Gen)
			}
			mustAck(t, q, "t", again)
			if got := q.Pending("t"); got != 0 {
				t.Fatalf("Pending after acking new generation = %d, want 0", got)
			}
		})
	}
}

func TestFailKeepsRecords(t *testing.T) {
	q, path := testutil.OpenQueue(t, Open, "", "t")
	mustAdd(t, q, "a", "b")
	items := mustClaim(t, q, "t", 10)
	if err := q.Fail("t", items, Failure{ExitCode: 23, Error: "partial transfer"}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	_, recs := records(t, q, "t")
	first := recs["a"].FirstFail
	for _, p := range []string{"a", "b"} {
		r, ok := recs[p]
		switch {
		case !ok:
			t.Fatalf("record %q gone after Fail", p)
		case r.Attempts != 1 || r.ExitCode != 23 || r.Error != "" || !r.Failed():
			t.Fatalf("record %q = %+v, want Attempts 1, ExitCode 23, the batch's error not repeated in it", p, r)
		case r.FirstFail.IsZero() || !r.LastFail.Equal(r.FirstFail):
			t.Fatalf("record %q: FirstFail %v LastFail %v, want equal and set", p, r.FirstFail, r.LastFail)
		}
	}
	if got := q.Pending("t"); got != 2 {
		t.Fatalf("Pending = %d, want 2", got)
	}
	lastFailure(t, q, "partial transfer")

	items = mustClaim(t, q, "t", 10)
	equal(t, "claim after Fail", paths(items), []string{"a", "b"})
	if err := q.Fail("t", items, Failure{ExitCode: 10, Error: "socket"}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	_, recs = records(t, q, "t")
	r := recs["a"]
	if r.Attempts != 2 || r.ExitCode != 10 {
		t.Fatalf("after second Fail: %+v, want Attempts 2 and the latest exit code", r)
	}
	lastFailure(t, q, "socket")
	if !r.FirstFail.Equal(first) || r.LastFail.Before(first) {
		t.Fatalf("FirstFail moved (%v -> %v) or LastFail went back (%v)", first, r.FirstFail, r.LastFail)
	}

	// The failure history is durable too.
	q.Close()
	q2, _ := testutil.OpenQueue(t, Open, path, "t")
	_, recs = records(t, q2, "t")
	if recs["b"].Attempts != 2 {
		t.Fatalf("after reopen: %+v", recs["b"])
	}
	lastFailure(t, q2, "socket")

	// A path pushed alone keeps its own error.
	items = mustClaim(t, q2, "t", 1)
	if err := q2.Fail("t", items, Failure{ExitCode: 23, Error: "a: Permission denied (13)"}); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	_, recs = records(t, q2, "t")
	if r := recs["a"]; r.Error != "a: Permission denied (13)" || recs["b"].Error != "" {
		t.Fatalf("after a failure of one path: a %+v, b %+v", r, recs["b"])
	}
	lastFailure(t, q2, "a: Permission denied (13)")
}

func lastFailure(t *testing.T, q *Queue, want string) {
	t.Helper()
	if got, err := q.LastFailure("t"); err != nil || got != want {
		t.Fatalf("LastFailure = %q (%v), want %q", got, err, want)
	}
}

func TestFailParkAndUnpark(t *testing.T) {
	tests := []struct {
		name  string
		after func(t *testing.T, q *Queue)
		want  []string
	}{
		{"parked is skipped", func(*testing.T, *Queue) {}, []string{"good"}},
		{"unpark frees it", func(_ *testing.T, q *Queue) { q.Unpark("t") }, []string{"bad", "good"}},
		{"new change frees it", func(t *testing.T, q *Queue) { mustAdd(t, q, "bad") }, []string{"bad", "good"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "t")
			mustAdd(t, q, "bad")
			items := mustClaim(t, q, "t", 10)
			if err := q.Fail("t", items, Failure{ExitCode: 23, Park: time.Hour}); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, q, "good")
			tc.after(t, q)
			equal(t, "claimed", claimPaths(t, q, "t", 10), tc.want)
		})
	}
}

func TestClaimSkipsOverlappingPaths(t *testing.T) {
	type finish int
	const (
		ack finish = iota
		release
		fail
	)
	tests := []struct {
		name     string
		inflight string
		pending  []string
		during   []string // claimable while inflight is in flight
		after    []string // claimable once it is finished
		finish   finish
	}{
		{"descendants of an in-flight dir", "a", []string{"a/b", "a/b/c", "x"}, []string{"x"}, []string{"a/b", "a/b/c"}, ack},
		{"ancestors of an in-flight file", "a/b/c", []string{"a", "a/b", "x"}, []string{"x"}, []string{"a", "a/b"}, release},
		{"name prefix is not an ancestor", "a", []string{"ab", "a.txt", "b/a", "ab/c"}, []string{"ab", "a.txt", "b/a", "ab/c"}, []string{}, ack},
		{"sibling of in-flight file", "a/b", []string{"a/c", "a/bc"}, []string{"a/c", "a/bc"}, []string{}, ack},
		{"released after fail", "d", []string{"d/e"}, []string{}, []string{"d/e"}, fail},
		{"same path changed again", "a", []string{"a"}, []string{}, []string{"a"}, ack},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "t")
			mustAdd(t, q, tc.inflight)
			held := mustClaim(t, q, "t", 1)
			mustAdd(t, q, tc.pending...)
			during := mustClaim(t, q, "t", 100)
			equal(t, "claimed while "+tc.inflight+" in flight", paths(during), tc.during)
			var err error
			switch tc.finish {
			case ack:
				err = q.Ack("t", held)
			case release:
				q.Release("t", held)
			case fail:
				err = q.Fail("t", held, Failure{ExitCode: 1})
			}
			if err != nil {
				t.Fatal(err)
			}
			after := claimPaths(t, q, "t", 100)
			if tc.finish != ack {
				// Released or failed, the in-flight path itself is claimable again.
				tc.after = append([]string{tc.inflight}, tc.after...)
			}
			equal(t, "claimed after finish", after, tc.after)
		})
	}
}

// Claims by one target must not block another: their rsyncs go to
// different places.
func TestInFlightIsPerTarget(t *testing.T) {
	q, _ := testutil.OpenQueue(t, Open, "", "A", "B")
	mustAdd(t, q, "a")
	mustClaim(t, q, "A", 10)
	mustAdd(t, q, "a/b")
	equal(t, "B claims", claimPaths(t, q, "B", 10), []string{"a", "a/b"})
}

// A full sync is claimed alone, but not exclusively: the pool runs it beside
// the live pushes and pushes what they touched again after it (pool.go), so
// the queue must not hold live paths back for the length of a full push.
func TestFullSync(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, q *Queue)
	}{
		{"pending full sync is claimed alone", func(t *testing.T, q *Queue) {
			mustAdd(t, q, FullSync, "a", "b")
			equal(t, "claim", claimPaths(t, q, "t", 10), []string{FullSync})
			equal(t, "next claim", claimPaths(t, q, "t", 10), []string{"a", "b"})
		}},
		{"full sync behind other paths comes in a claim of its own", func(t *testing.T, q *Queue) {
			mustAdd(t, q, "a", "b", FullSync, "c")
			equal(t, "first claim", claimPaths(t, q, "t", 10), []string{"a", "b", "c"})
			equal(t, "second claim", claimPaths(t, q, "t", 10), []string{FullSync})
		}},
		{"live paths are claimed beside a full sync in flight", func(t *testing.T, q *Queue) {
			mustAdd(t, q, FullSync)
			full := mustClaim(t, q, "t", 10)
			mustAdd(t, q, "a", "b/c")
			equal(t, "claim during full sync", claimPaths(t, q, "t", 10), []string{"a", "b/c"})
			mustAck(t, q, "t", full)
		}},
		{"no second full sync while one is in flight", func(t *testing.T, q *Queue) {
			mustAdd(t, q, FullSync)
			full := mustClaim(t, q, "t", 10)
			mustAdd(t, q, FullSync)
			equal(t, "claim during full sync", claimPaths(t, q, "t", 10), []string{})
			// Re-added during its push, it must run again after the Ack.
			mustAck(t, q, "t", full)
			equal(t, "claim after ack", claimPaths(t, q, "t", 10), []string{FullSync})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "t")
			tc.run(t, q)
		})
	}
}

func TestTargetsAreIndependent(t *testing.T) {
	q, path := testutil.OpenQueue(t, Open, "", "A", "B")
	mustAdd(t, q, "x", "y")
	mustAck(t, q, "A", mustClaim(t, q, "A", 10))
	if a, b := q.Pending("A"), q.Pending("B"); a != 0 || b != 2 {
		t.Fatalf("Pending A=%d B=%d, want 0 and 2", a, b)
	}
	order, _ := records(t, q, "B")
	equal(t, "B records", order, []string{"x", "y"})

	if err := q.AddTarget("A", []string{"z"}); err != nil {
		t.Fatalf("AddTarget: %v", err)
	}
	if a, b := q.Pending("A"), q.Pending("B"); a != 1 || b != 2 {
		t.Fatalf("after AddTarget(A): Pending A=%d B=%d, want 1 and 2", a, b)
	}
	equal(t, "A claims", claimPaths(t, q, "A", 10), []string{"z"})
	equal(t, "B claims", claimPaths(t, q, "B", 10), []string{"x", "y"})

	if err := q.AddTarget("nope", []string{"z"}); err == nil {
		t.Fatal("AddTarget of an unknown target: want error")
	}
	if _, err := q.Claim("nope", 1); err == nil {
		t.Fatal("Claim of an unknown target: want error")
	}

	q.Close()
	q2, _ := testutil.OpenQueue(t, Open, path, "A", "B")
	if a, b := q2.Pending("A"), q2.Pending("B"); a != 1 || b != 2 {
		t.Fatalf("after reopen: Pending A=%d B=%d, want 1 and 2", a, b)
	}
}

func TestDurabilityAndUncleanMarker(t *testing.T) {
	tests := []struct {
		name        string
		stop        func(q *Queue) error
		wantUnclean bool
	}{
		{"clean close", func(q *Queue) error { return q.Close() }, false},
		// Closing only the bolt file is what a kill -9 leaves behind: the
		// committed records, and the "running" marker.
		{"crash", func(q *Queue) error { return q.db.Close() }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.db")
			q, err := Open(path, []string{"t"})
			if err != nil {
				t.Fatal(err)
			}
			if q.Unclean() {
				t.Fatal("a new queue file reports Unclean")
			}
			mustAdd(t, q, "a", "b")
			if err := tc.stop(q); err != nil {
				t.Fatalf("stop: %v", err)
			}

			q2, err := Open(path, []string{"t"})
			if err != nil {
				t.Fatal(err)
			}
			if got := q2.Unclean(); got != tc.wantUnclean {
				t.Fatalf("Unclean = %v, want %v", got, tc.wantUnclean)
			}
			// A crash marks changes missed: a full push is queued.
			want := []string{"a", "b"}
			if tc.wantUnclean {
				want = append(want, FullSync)
			}
			if got := q2.Missed() != ""; got != tc.wantUnclean {
				t.Fatalf("Missed = %q after %s", q2.Missed(), tc.name)
			}
			if got := q2.Pending("t"); got != len(want) {
				t.Fatalf("Pending = %d, want %d", got, len(want))
			}
			got, _ := records(t, q2, "t")
			equal(t, "records", got, want)
			if err := q2.Close(); err != nil {
				t.Fatal(err)
			}

			// One clean run clears the unclean marker; the full push it
			// asked for stays owed until it has been pushed.
			q3, _ := testutil.OpenQueue(t, Open, path, "t")
			if q3.Unclean() {
				t.Fatal("Unclean after a clean Close")
			}
			if got := q3.Missed() != ""; got != tc.wantUnclean {
				t.Fatalf("Missed = %q after a clean run", q3.Missed())
			}
		})
	}
}

// A tool opening the queue while the daemon is down must not hide the
// daemon's crash from its next start.
func TestOpenToolKeepsUncleanMarker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(path, []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	q.db.Close()

	tool, err := OpenTool(path, []string{"t"})
	if err != nil {
		t.Fatal(err)
	}
	if !tool.Unclean() {
		t.Fatal("OpenTool does not see the crash")
	}
	if err := tool.Close(); err != nil {
		t.Fatal(err)
	}
	if q2, _ := testutil.OpenQueue(t, Open, path, "t"); !q2.Unclean() {
		t.Fatal("the daemon no longer sees its crash after a tool ran")
	}
}

func TestOpenLockedFails(t *testing.T) {
	const wait = 100 * time.Millisecond

	tests := []struct {
		name string
		open func(string, []string) (*Queue, error)
	}{
		{"Open", func(p string, ts []string) (*Queue, error) { return open(p, ts, true, wait) }},
		{"OpenTool", func(p string, ts []string) (*Queue, error) { return open(p, ts, false, wait) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, path := testutil.OpenQueue(t, Open, "", "t")
			type result struct {
				q   *Queue
				err error
			}
			res := make(chan result, 1)
			start := time.Now()
			go func() {
				q, err := tc.open(path, []string{"t"})
				res <- result{q, err}
			}()
			select {
			case r := <-res:
				if r.err == nil {
					r.q.Close()
					t.Fatal("second Open of a locked file succeeded")
				}
				if !errors.Is(r.err, ErrLocked) {
					t.Fatalf("error %v does not wrap ErrLocked", r.err)
				}
				// bbolt gives up one lock retry (50ms) before the timeout,
				// so only the upper bound is exact enough to check.
				if took := time.Since(start); took > wait+time.Second {
					t.Fatalf("gave up after %v, the wait is %v", took, wait)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Open of a locked file did not return within 5s")
			}
		})
	}
}

func TestPathsRoundTripExactly(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{"newline", "dir/a\nb"},
		{"carriage return and tab", "a\r\tb"},
		{"invalid UTF-8", "bad\xff\xfe/\xc3("},
		{"leading dash", "-rf"},
		{"option lookalike", "--delete"},
		{"spaces and quotes", ` it's "quoted" `},
		{"wildcards and backslash", `a*b?[c]\d`},
		{"4000 bytes", strings.Repeat("long/", 799) + "tail!"},
		{"4000-byte name", strings.Repeat("n", 4000)},
		{"every byte but NUL", func() string {
			b := make([]byte, 0, 255)
			for c := 1; c < 256; c++ {
				b = append(b, byte(c))
			}
			return string(b)
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, path := testutil.OpenQueue(t, Open, "", "t")
			mustAdd(t, q, tc.path)
			if got := claimPaths(t, q, "t", 10); len(got) != 1 || got[0] != tc.path {
				t.Fatalf("claimed %q, want %q", got, tc.path)
			}
			q.Close()
			q2, _ := testutil.OpenQueue(t, Open, path, "t")
			order, _ := records(t, q2, "t")
			if len(order) != 1 || order[0] != tc.path {
				t.Fatalf("after reopen: records %q, want %q", order, tc.path)
			}
			items := mustClaim(t, q2, "t", 10)
			mustAck(t, q2, "t", items)
			if got := q2.Pending("t"); got != 0 {
				t.Fatalf("Pending after Ack = %d", got)
			}
		})
	}
}

func TestNotify(t *testing.T) {
	received := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(2 * time.Second):
			return false
		}
	}
	drained := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return false
		default:
			return true
		}
	}

	q, _ := testutil.OpenQueue(t, Open, "", "A", "B")
	a, b := q.Notify("A"), q.Notify("B")

	mustAdd(t, q, "x")
	if !received(a) || !received(b) {
		t.Fatal("Add did not notify every target")
	}

	if err := q.AddTarget("A", []string{"y"}); err != nil {
		t.Fatal(err)
	}
	if !received(a) {
		t.Fatal("AddTarget did not notify its target")
	}
	if !drained(b) {
		t.Fatal("AddTarget notified another target")
	}

	// Notifications coalesce: many Adds while nobody listens leave one.
	for range 10 {
		mustAdd(t, q, "z")
	}
	if !received(a) || !drained(a) {
		t.Fatal("notifications did not coalesce into one")
	}

	// A path that changed during its push stays; the pusher must be woken
	// for it, since no Add follows.
	items := mustClaim(t, q, "A", 10)
	mustAdd(t, q, "x")
	received(a)
	mustAck(t, q, "A", items)
	if !received(a) {
		t.Fatal("Ack leaving a changed path did not notify")
	}
}

// A backlog larger than one transaction's share is written in several, and
// reads back whole, in order, with every target's count right.
func TestBigAddSpansTransactions(t *testing.T) {
	q, _ := testutil.OpenQueue(t, Open, "", "t1", "t2")
	q.addChunk = 3
	var paths []string
	for i := 0; i < 10; i++ {
		paths = append(paths, fmt.Sprintf("p%02d", i))
	}
	mustAdd(t, q, paths...)
	for _, target := range []string{"t1", "t2"} {
		if n := q.Pending(target); n != len(paths) {
			t.Fatalf("%s: %d pending, want %d", target, n, len(paths))
		}
		equal(t, target+" claimed", claimPaths(t, q, target, 100), paths)
	}
}

func TestFailing(t *testing.T) {
	q, _ := testutil.OpenQueue(t, Open, "", "t")
	mustAdd(t, q, "a", "b", "c")
	count := func(what string, wantFailed, wantHeld int) {
		t.Helper()
		failed, held, err := q.Failing("t")
		if err != nil || failed != wantFailed || held != wantHeld {
			t.Fatalf("%s: Failing = %d failed, %d held (%v), want %d, %d", what, failed, held, err, wantFailed, wantHeld)
		}
	}
	count("nothing pushed yet", 0, 0)
	items := mustClaim(t, q, "t", 2) // a, b
	count("first push under way", 0, 0)
	if err := q.Fail("t", items, Failure{ExitCode: 10, Error: "socket"}); err != nil {
		t.Fatal(err)
	}
	count("a and b failed", 2, 0)
	items = mustClaim(t, q, "t", 10) // a, b, c
	count("a push of them under way", 2, 2)
	if err := q.Ack("t", items); err != nil {
		t.Fatal(err)
	}
	count("all pushed", 0, 0)
	if _, _, err := q.Failing("nope"); err == nil {
		t.Error("Failing of an unknown target: no error")
	}
}

// TestMissedMark: MarkMissed queues a full push for every target, and the
// mark stays, across clean stops, until every target has pushed the whole
// tree after it; a full push that was running when changes were missed
// does not count.
func TestMissedMark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, _ := testutil.OpenQueue(t, Open, path, "A", "B")
	if q.Missed() != "" {
		t.Fatalf("a new queue has Missed = %q", q.Missed())
	}
	if err := q.MarkMissed("overflow"); err != nil {
		t.Fatal(err)
	}
	if err := q.MarkMissed("root removed"); err != nil {
		t.Fatal(err)
	}
	if a, b := q.Pending("A"), q.Pending("B"); a != 1 || b != 1 {
		t.Fatalf("Pending A=%d B=%d, want one full push each", a, b)
	}
	q.Close()
	q, _ = testutil.OpenQueue(t, Open, path, "A", "B")
	if q.Missed() != "overflow" {
		t.Fatalf("after a clean stop Missed = %q, want the first reason", q.Missed())
	}
	missedNow := func() string {
		t.Helper()
		why, err := q.MissedNow()
		if err != nil {
			t.Fatal(err)
		}
		return why
	}
	a := mustClaim(t, q, "A", 10)
	equal(t, "claim A", paths(a), []string{FullSync})
	if err := q.Ack("A", a); err != nil {
		t.Fatal(err)
	}
	if missedNow() == "" {
		t.Fatal("cleared while B still owes its full push")
	}
	b := mustClaim(t, q, "B", 10)
	// Missed again while B's full push runs: it may have read the tree
	// before, so it does not clear the mark.
	if err := q.MarkMissed("overflow again"); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack("B", b); err != nil {
		t.Fatal(err)
	}
	if missedNow() == "" {
		t.Fatal("cleared by a full push that started before the changes were missed")
	}
	for _, target := range []string{"A", "B"} {
		items := mustClaim(t, q, target, 10)
		equal(t, "claim "+target, paths(items), []string{FullSync})
		if err := q.Ack(target, items); err != nil {
			t.Fatal(err)
		}
	}
	if why := missedNow(); why != "" {
		t.Fatalf("still marked (%q) after every target pushed the tree", why)
	}
	q.Close()
	if q, _ = testutil.OpenQueue(t, Open, path, "A", "B"); q.Missed() != "" || q.Pending("A")+q.Pending("B") != 0 {
		t.Fatalf("reopened: Missed %q, pending %d", q.Missed(), q.Pending("A")+q.Pending("B"))
	}
}

// TestAddTargetDuringSetTargets: a reload sets the targets while the
// crontab or a replay adds to one; -race saw AddTarget read the target map
// without the lock.
func TestAddTargetDuringSetTargets(t *testing.T) {
	q, _ := testutil.OpenQueue(t, Open, "", "a", "b")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 300; i++ {
			if err := q.SetTargets([]string{"a", "b", fmt.Sprint("c", i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 300; i++ {
		if err := q.AddTarget("a", []string{fmt.Sprint("p", i)}); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

// TestScopedToSourceTargets: with several source trees, a tree's changes,
// its missed changes and its parks concern its own targets only (A1, A2
// for tree A; B for tree B), and the mark clears once those have pushed.
func TestScopedToSourceTargets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q, _ := testutil.OpenQueue(t, Open, path, "A1", "A2", "B")
	treeA := []string{"A1", "A2"}
	if err := q.AddTargets(treeA, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	if a1, a2, b := q.Pending("A1"), q.Pending("A2"), q.Pending("B"); a1 != 1 || a2 != 1 || b != 0 {
		t.Fatalf("after tree A's change: pending A1=%d A2=%d B=%d, want 1 1 0", a1, a2, b)
	}
	if err := q.AddTargets([]string{"A1", "nope"}, []string{"y"}); err == nil || !strings.Contains(err.Error(), `unknown target "nope"`) {
		t.Fatalf("AddTargets with an unknown target: %v", err)
	}
	if err := q.MarkMissedTargets("tree A: the inotify queue overflowed", treeA); err != nil {
		t.Fatal(err)
	}
	if b := q.Pending("B"); b != 0 {
		t.Fatalf("tree A's overflow queued %d records for tree B's target", b)
	}
	for _, target := range treeA {
		items := mustClaim(t, q, target, 10)
		equal(t, "claim "+target, paths(items), []string{"x"})
		mustAck(t, q, target, items)
		why, err := q.MissedNow()
		if err != nil || why != "tree A: the inotify queue overflowed" {
			t.Fatalf("after %s pushed x: mark %q (%v), want it kept until A's full pushes", target, why, err)
		}
		items = mustClaim(t, q, target, 10)
		equal(t, "claim "+target, paths(items), []string{FullSync})
		mustAck(t, q, target, items)
	}
	if why, _ := q.MissedNow(); why != "" {
		t.Fatalf("mark %q kept after every target of tree A pushed the tree", why)
	}
	if err := q.AddTargets([]string{"B"}, []string{"p"}); err != nil {
		t.Fatal(err)
	}
	items := mustClaim(t, q, "B", 10)
	if err := q.Fail("B", items, Failure{ExitCode: 23, Error: "unreadable", Park: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if !q.ParkedFor([]string{"B"}, "p") || q.ParkedFor(treeA, "p") {
		t.Errorf("ParkedFor: tree B %v, tree A %v; want the park of B's p seen by B only", q.ParkedFor([]string{"B"}, "p"), q.ParkedFor(treeA, "p"))
	}
}

// TestCrashOwesEveryTargetAFullPush: a crash while an older mark still
// stands (one target had pushed the whole tree for it, the other not) owes
// both targets a full push again: the first had pushed before what this
// crash lost. TestKill9Repeated lost changes on one target without it.
func TestCrashOwesEveryTargetAFullPush(t *testing.T) {
	q, path := testutil.OpenQueue(t, Open, "", "a", "b")
	if err := q.MarkMissed("an overflow"); err != nil {
		t.Fatal(err)
	}
	items, err := q.Claim("a", 10)
	if err != nil || len(items) != 1 || items[0].Path != FullSync {
		t.Fatalf("claim a: %v %v", items, err)
	}
	if err := q.Ack("a", items); err != nil {
		t.Fatal(err)
	}
	if err := q.db.Close(); err != nil { // a crash: no clean mark
		t.Fatal(err)
	}
	q2, err := Open(path, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	for _, target := range []string{"a", "b"} {
		items, err := q2.Claim(target, 10)
		if err != nil || len(items) != 1 || items[0].Path != FullSync {
			t.Errorf("after the crash, target %s claims %v (%v), want the full push", target, items, err)
		}
	}
}

// TestOldestQueued: the metrics' lag reads the first record in queue
// order; none waiting is zero, an unknown target an error.
func TestOldestQueued(t *testing.T) {
	q, _ := testutil.OpenQueue(t, Open, "", "t")
	if got, err := q.OldestQueued("t"); err != nil || !got.IsZero() {
		t.Fatalf("empty queue: %v, %v; want zero", got, err)
	}
	mustAdd(t, q, "a")
	time.Sleep(2 * time.Millisecond)
	mustAdd(t, q, "b")
	var queued []time.Time
	if err := q.Records("t", func(_ string, rec Record) bool { queued = append(queued, rec.Queued); return true }); err != nil {
		t.Fatal(err)
	}
	if got, err := q.OldestQueued("t"); err != nil || !got.Equal(queued[0]) {
		t.Fatalf("OldestQueued = %v, %v; want a's %v", got, err, queued[0])
	}
	mustAck(t, q, "t", mustClaim(t, q, "t", 1))
	if got, err := q.OldestQueued("t"); err != nil || !got.Equal(queued[1]) {
		t.Fatalf("after a is pushed: %v, %v; want b's %v", got, err, queued[1])
	}
	if _, err := q.OldestQueued("nope"); err == nil {
		t.Fatal("unknown target: no error")
	}
}
