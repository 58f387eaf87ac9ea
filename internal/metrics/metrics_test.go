package metrics

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/status"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

// fakeSource hands out whatever snapshot it was last given.
type fakeSource struct {
	mu sync.Mutex
	s  Snapshot
}

func (f *fakeSource) Snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.s
}

func (f *fakeSource) set(s Snapshot) {
	f.mu.Lock()
	f.s = s
	f.mu.Unlock()
}

// get serves one request through h and returns its status and body.
func get(t *testing.T, h http.Handler, path string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Header(), rec.Body.String()
}

// samples reads the text exposition into "name{labels}" -> value.
func samples(t *testing.T, body string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("bad exposition line %q", line)
		}
		m[line[:i]] = line[i+1:]
	}
	return m
}

func TestUnhealthy(t *testing.T) {
	const bound = time.Minute
	for _, tc := range []struct {
		name string
		snap Snapshot
		want []string
	}{
		{name: "nothing to do", snap: Snapshot{}, want: nil},
		{
			name: "targets keeping up",
			snap: Snapshot{WatchedDirs: 10, Overflows: 3, Targets: []status.Target{
				{Name: "a", Pending: 5, LagSeconds: (30 * time.Second).Seconds()},
				{Name: "b", LastError: "an old error, since pushed"},
			}},
			want: nil,
		},
		{
			name: "lag at the bound",
			snap: Snapshot{Targets: []status.Target{{Name: "a", Pending: 1, LagSeconds: bound.Seconds()}}},
			want: nil,
		},
		{
			name: "lag over the bound",
			snap: Snapshot{Targets: []status.Target{{Name: "a", Pending: 1, LagSeconds: (bound + 1400*time.Millisecond).Seconds()}}},
			want: []string{"target a: oldest pending change is 1m1s old (bound 1m0s)"},
		},
		{
			name: "degraded watch",
			snap: Snapshot{Degraded: "fs.inotify.max_user_watches reached"},
			want: []string{"not every directory is watched: fs.inotify.max_user_watches reached"},
		},
		{
			name: "failing target",
			snap: Snapshot{Targets: []status.Target{{Name: "b", ConsecutiveFailures: 3, LastError: "rsync exit 10"}}},
			want: []string{"target b: 3 failed pushes in a row: rsync exit 10"},
		},
		{
			name: "failing and lagging says the failure once",
			snap: Snapshot{Targets: []status.Target{{Name: "b", ConsecutiveFailures: 1, LastError: "x", LagSeconds: time.Hour.Seconds()}}},
			want: []string{"target b: 1 failed pushes in a row: x"},
		},
		{
			name: "everything at once, in order",
			snap: Snapshot{Degraded: "limit", Targets: []status.Target{
				{Name: "a", LagSeconds: (2 * time.Minute).Seconds()},
				{Name: "ok"},
				{Name: "c", ConsecutiveFailures: 2, LastError: "down"},
			}},
			want: []string{
				"not every directory is watched: limit",
				"target a: oldest pending change is 2m0s old (bound 1m0s)",
				"target c: 2 failed pushes in a row: down",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Unhealthy(tc.snap, bound); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Unhealthy =\n %q\nwant\n %q", got, tc.want)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snap     Snapshot
		code     int
		contains []string
	}{
		{name: "healthy", snap: Snapshot{Targets: []status.Target{{Name: "a", Pending: 2, LagSeconds: time.Second.Seconds()}}}, code: http.StatusOK},
		{name: "degraded", snap: Snapshot{Degraded: "watch limit"}, code: http.StatusServiceUnavailable,
			contains: []string{"not every directory is watched: watch limit"}},
		{name: "failing", snap: Snapshot{Targets: []status.Target{{Name: "a", ConsecutiveFailures: 4, LastError: "auth failed"}}},
			code: http.StatusServiceUnavailable, contains: []string{"target a: 4 failed pushes in a row: auth failed"}},
		{name: "lagging", snap: Snapshot{Targets: []status.Target{{Name: "a", LagSeconds: (10 * time.Minute).Seconds()}}},
			code: http.StatusServiceUnavailable, contains: []string{"target a: oldest pending change is 10m0s old"}},
		{name: "several reasons", snap: Snapshot{Degraded: "d", Targets: []status.Target{{Name: "x", ConsecutiveFailures: 1}}},
			code: http.StatusServiceUnavailable, contains: []string{"not every directory is watched: d\ntarget x: 1 failed pushes in a row"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(&fakeSource{s: tc.snap}).Handler(5 * time.Minute)
			code, hdr, body := get(t, h, "/healthz")
			if code != tc.code {
				t.Errorf("status %d, want %d (body %q)", code, tc.code, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body %q lacks %q", body, s)
				}
			}
			if (body == "ok\n") != (tc.code == http.StatusOK) {
				t.Errorf("body %q: only a healthy answer is exactly ok", body)
			}
		})
	}
}

func TestHealthzReadsSourceAtRequestTime(t *testing.T) {
	src := &fakeSource{}
	h := New(src).Handler(time.Minute)
	if code, _, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	src.set(Snapshot{Targets: []status.Target{{Name: "a", ConsecutiveFailures: 1}}})
	if code, _, _ := get(t, h, "/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d after the target failed, want 503", code)
	}
	src.set(Snapshot{Targets: []status.Target{{Name: "a"}}})
	if code, _, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("status %d after the target recovered, want 200", code)
	}
}

func TestMetricsExposition(t *testing.T) {
	src := &fakeSource{s: Snapshot{
		WatchedDirs: 42,
		Overflows:   3,
		Degraded:    "watch limit",
		Targets: []status.Target{
			{Name: "a", Source: "/srv/a", Pending: 5, LagSeconds: (90 * time.Second).Seconds()},
			{Name: "b", Source: "/srv/b", Pending: 0, ConsecutiveFailures: 4, LastError: "down"},
		},
	}}
	m := New(src)
	// Each target's series name its tree (several <localpath>).
	m.SetTargetSources(map[string]string{"a": "/srv/a", "b": "/srv/b"})
	m.Pushed("a", []string{"x", "y", "z"}, 250*time.Millisecond, nil)
	m.Pushed("a", []string{"w"}, time.Second, &pusher.PushError{Outcome: pusher.Partial, Code: 23, Err: errors.New("partial")})
	m.Pushed("a", []string{"v"}, 2*time.Second, fmt.Errorf("batch: %w", &pusher.PushError{Outcome: pusher.Partial, Code: 23, Err: errors.New("partial")}))
	m.Pushed("b", []string{"u"}, 0, errors.New("run rsync: signal: killed"))
	m.BytesSent("a", 1000)
	m.BytesSent("a", 234)
	m.Queued(4)
	m.Queued(3)
	m.Event("create")
	m.Event("create")
	m.Event("delete")

	code, hdr, body := get(t, m.Handler(time.Minute), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	got := samples(t, body)
	for name, want := range map[string]string{
		`sersyncd_pushes_total{exit="0",source="/srv/a",target="a"}`:                  "1",
		`sersyncd_pushes_total{exit="23",source="/srv/a",target="a"}`:                 "2",
		`sersyncd_pushes_total{exit="-1",source="/srv/b",target="b"}`:                 "1",
		`sersyncd_pushed_paths_total{source="/srv/a",target="a"}`:                     "3",
		`sersyncd_push_duration_seconds_count{source="/srv/a",target="a"}`:            "3",
		`sersyncd_push_duration_seconds_sum{source="/srv/a",target="a"}`:              "3.25",
		`sersyncd_push_duration_seconds_bucket{source="/srv/a",target="a",le="0.25"}`: "1",
		`sersyncd_push_duration_seconds_bucket{source="/srv/a",target="a",le="1"}`:    "2",
		`sersyncd_push_duration_seconds_bucket{source="/srv/a",target="a",le="2.5"}`:  "3",
		`sersyncd_push_duration_seconds_count{source="/srv/b",target="b"}`:            "1",
		`sersyncd_bytes_sent_total{source="/srv/a",target="a"}`:                       "1234",
		`sersyncd_paths_queued_total`:                                                 "7",
		`sersyncd_events_total{kind="create"}`:                                        "2",
		`sersyncd_events_total{kind="delete"}`:                                        "1",
		`sersyncd_pending_paths{source="/srv/a",target="a"}`:                          "5",
		`sersyncd_pending_paths{source="/srv/b",target="b"}`:                          "0",
		`sersyncd_replication_lag_seconds{source="/srv/a",target="a"}`:                "90",
		`sersyncd_replication_lag_seconds{source="/srv/b",target="b"}`:                "0",
		`sersyncd_target_consecutive_failures{source="/srv/a",target="a"}`:            "0",
		`sersyncd_target_consecutive_failures{source="/srv/b",target="b"}`:            "4",
		`sersyncd_watched_directories`:                                                "42",
		`sersyncd_inotify_overflows_total`:                                            "3",
		`sersyncd_watch_degraded`:                                                     "1",
		`sersyncd_health_lag_seconds`:                                                 "60",
	} {
		if v, ok := got[name]; !ok {
			t.Errorf("%s missing", name)
		} else if v != want {
			t.Errorf("%s = %s, want %s", name, v, want)
		}
	}
	// Paths of failed pushes are not counted as pushed.
	if v, ok := got[`sersyncd_pushed_paths_total{source="/srv/b",target="b"}`]; ok {
		t.Errorf(`sersyncd_pushed_paths_total{source="/srv/b",target="b"} = %s, want no series`, v)
	}
	for _, family := range []string{
		"# TYPE sersyncd_pushes_total counter",
		"# TYPE sersyncd_push_duration_seconds histogram",
		"# TYPE sersyncd_pending_paths gauge",
		"# TYPE sersyncd_inotify_overflows_total counter",
		"# TYPE sersyncd_watch_degraded gauge",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, family) {
			t.Errorf("exposition lacks %q", family)
		}
	}
}

func TestWatchDegradedGauge(t *testing.T) {
	for _, tc := range []struct {
		degraded string
		want     string
	}{
		{"", "0"},
		{"watch limit", "1"},
	} {
		t.Run(fmt.Sprintf("%q", tc.degraded), func(t *testing.T) {
			_, _, body := get(t, New(&fakeSource{s: Snapshot{Degraded: tc.degraded}}).Handler(time.Minute), "/metrics")
			if got := samples(t, body)["sersyncd_watch_degraded"]; got != tc.want {
				t.Errorf("sersyncd_watch_degraded = %q, want %s", got, tc.want)
			}
		})
	}
}

func TestSetSource(t *testing.T) {
	m := New(nil)
	h := m.Handler(time.Minute)
	m.SetSource(&fakeSource{s: Snapshot{WatchedDirs: 9, Targets: []status.Target{{Name: "late", ConsecutiveFailures: 1}}}})
	if _, _, body := get(t, h, "/metrics"); samples(t, body)["sersyncd_watched_directories"] != "9" {
		t.Errorf("the gauges do not come from the source set later:\n%s", body)
	}
	if code, _, body := get(t, h, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "target late") {
		t.Errorf("/healthz = %d %q, want the later source's failing target", code, body)
	}
}

func TestPprof(t *testing.T) {
	h := New(&fakeSource{}).Handler(time.Minute)
	for _, tc := range []struct{ path, contains string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, _, body := get(t, h, tc.path)
			if code != http.StatusOK || !strings.Contains(body, tc.contains) {
				t.Errorf("GET %s = %d, body lacks %q", tc.path, code, tc.contains)
			}
		})
	}
}

func TestServe(t *testing.T) {
	src := &fakeSource{s: Snapshot{WatchedDirs: 5}}
	m := New(src)
	// Serve does not say which port it bound, so take a free one first.
	var srv *Server
	var addr string
	for range 5 {
		addr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		var err error
		if srv, err = m.Serve(addr, time.Minute); err == nil {
			break
		} else if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("Serve(%s): %v", addr, err)
		}
	}
	if srv == nil {
		t.Fatal("no free port")
	}
	client := &http.Client{Timeout: 2 * time.Second}
	fetch := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := fetch("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	src.set(Snapshot{WatchedDirs: 5, Degraded: "limit"})
	if code, _ := fetch("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d while degraded, want 503", code)
	}
	if code, body := fetch("/metrics"); code != http.StatusOK || !strings.Contains(body, "\nsersyncd_watched_directories 5\n") {
		t.Errorf("/metrics = %d, body lacks sersyncd_watched_directories 5", code)
	}
	if err := srv.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := client.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the server still answers after Close")
	}
}

func TestServeBadAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct{ name, addr string }{
		{"port in use", busy.Addr().String()},
		{"not a port", "127.0.0.1:http-ish"},
		{"no port", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := New(&fakeSource{}).Serve(tc.addr, time.Minute)
			if err == nil {
				srv.Close()
				t.Fatalf("Serve(%q) succeeded", tc.addr)
			}
			if !strings.Contains(err.Error(), "listen for metrics on "+tc.addr) {
				t.Errorf("error %q does not name the address", err)
			}
		})
	}
}

// TestVerifyGauges: a target's verify gauges appear once a scheduled verify
// could check it, and not before (a 0 would read as "no drift").
func TestVerifyGauges(t *testing.T) {
	when := time.Unix(1796136778, 500_000_000)
	src := &fakeSource{s: Snapshot{Targets: []status.Target{
		{Name: "checked", Source: "/srv/www", Verify: &status.Verify{LastSuccess: when, Drift: 3}},
		{Name: "never"},
	}}}
	_, _, body := get(t, New(src).Handler(time.Minute), "/metrics")
	m := samples(t, body)
	for name, want := range map[string]string{
		`sersyncd_verify_drift_paths{source="/srv/www",target="checked"}`:                    "3",
		`sersyncd_verify_last_success_timestamp_seconds{source="/srv/www",target="checked"}`: "1.7961367785e+09",
	} {
		if m[name] != want {
			t.Errorf("%s = %q, want %q", name, m[name], want)
		}
	}
	for name := range m {
		if strings.Contains(name, `target="never"`) && strings.HasPrefix(name, "sersyncd_verify_") {
			t.Errorf("%s exported for a target never checked", name)
		}
	}
}
