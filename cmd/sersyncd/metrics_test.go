package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue sums the samples of name whose labels contain every given
// label="value" pair.
func metricValue(t *testing.T, body, name string, labels ...string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? (\S+)$`)
	sum, found := 0.0, false
next:
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		for _, l := range labels {
			if !strings.Contains(m[1], l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		sum += v
		found = true
	}
	if !found {
		t.Fatalf("no sample of %s %v in:\n%s", name, labels, body)
	}
	return sum
}

func waitHTTP(t *testing.T, url string, want int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := httpGet(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, want %d:\n%s", url, code, want, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t, envOptions{targets: 2, backoffMax: "300ms"})
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	e.start("--metrics", addr)
	base := "http://" + addr
	for i := 0; i < 20; i++ {
		// Random bytes: -z would shrink repeated ones below what we count.
		buf := make([]byte, 1000)
		_, _ = rand.Read(buf)
		e.write(fmt.Sprintf("f%d", i), string(buf))
	}
	e.converge(10*time.Second, "first files")
	_, body := httpGet(t, base+"/metrics")
	if v := metricValue(t, body, "sersyncd_pushes_total", `exit="0"`); v < 2 {
		t.Fatalf("pushes_total{exit=0} = %v", v)
	}
	if v := metricValue(t, body, "sersyncd_pushed_paths_total"); v < 40 {
		t.Fatalf("pushed_paths_total = %v, want >= 40 (20 files x 2 targets)", v)
	}
	if v := metricValue(t, body, "sersyncd_bytes_sent_total"); v < 40*1000 {
		t.Fatalf("bytes_sent_total = %v, want >= 40000", v)
	}
	if v := metricValue(t, body, "sersyncd_paths_queued_total"); v < 20 {
		t.Fatalf("paths_queued_total = %v", v)
	}
	if v := metricValue(t, body, "sersyncd_watched_directories"); v != 1 {
		t.Fatalf("watched_directories = %v", v)
	}
	metricValue(t, body, "sersyncd_push_duration_seconds_count")
	if v := metricValue(t, body, "sersyncd_events_total", `kind="create"`); v < 20 {
		t.Fatalf("events_total{kind=create} = %v, want >= 20", v)
	}
	waitHTTP(t, base+"/healthz", 200, 5*time.Second)

	down := e.targets[1]
	down.Stop()
	e.write("while-down", "x")
	why := waitHTTP(t, base+"/healthz", 503, 10*time.Second)
	if !strings.Contains(why, down.Module) {
		t.Fatalf("/healthz does not name the failing target:\n%s", why)
	}
	_, body = httpGet(t, base+"/metrics")
	if v := metricValue(t, body, "sersyncd_pending_paths", down.Module); v < 1 {
		t.Fatalf("pending for the stopped target = %v", v)
	}
	if v := metricValue(t, body, "sersyncd_replication_lag_seconds", down.Module); v <= 0 {
		t.Fatalf("lag for the stopped target = %v", v)
	}
	down.Start()
	e.converge(15*time.Second, "after the target came back")
	waitHTTP(t, base+"/healthz", 200, 10*time.Second)
	// The lag returns to 0 once the queue is empty (after the full push
	// that follows a cut-off connection, too).
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body = httpGet(t, base+"/metrics")
		if v := metricValue(t, body, "sersyncd_replication_lag_seconds"); v == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("lag after convergence = %v, want 0", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := metricValue(t, body, "sersyncd_pushes_total", down.Module, `exit="10"`); v < 1 {
		t.Fatalf("no failed push counted with rsync's exit code 10:\n%s", body)
	}
}
