// Package metrics exposes sersyncd's state to Prometheus at /metrics and a
// health verdict at /healthz.
package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/status"
)

// Snapshot is the daemon's state at one moment.
type Snapshot struct {
	Targets     []status.Target
	WatchedDirs int
	Overflows   int
	Degraded    string // why some directories have no watch, "" when all have
}

// Source gives snapshots; the daemon implements it.
type Source interface {
	Snapshot() Snapshot
}

// Metrics holds the counters that events move and reads the gauges from a
// Source at scrape time.
type Metrics struct {
	reg       *prometheus.Registry
	src       Source
	pushes    *prometheus.CounterVec
	paths     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	bytesSent *prometheus.CounterVec
	queued    prometheus.Counter
	events    *prometheus.CounterVec
	healthLag atomic.Int64 // the /healthz lag bound, in nanoseconds
	// sources maps a target to the root of its tree, the source label of
	// the per-target series (SetTargetSources).
	sources atomic.Pointer[map[string]string]
}

var _ pusher.Observer = (*Metrics)(nil)

// New registers sersyncd's metrics, and Go's and the process's, in a
// registry of their own. src may be set later with SetSource, before the
// first scrape.
func New(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		src: src,
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sersyncd_pushes_total", Help: "rsync pushes by target and exit code (0: success).",
		}, []string{"target", "source", "exit"}),
		paths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sersyncd_pushed_paths_total", Help: "Paths pushed successfully, by target.",
		}, []string{"target", "source"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sersyncd_push_duration_seconds", Help: "Wall time of one rsync push, by target.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"target", "source"}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sersyncd_bytes_sent_total", Help: "Bytes rsync sent (its --stats), by target.",
		}, []string{"target", "source"}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sersyncd_paths_queued_total", Help: "Changed paths committed to the queue (per path, not per target).",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sersyncd_events_total", Help: "Filesystem events seen, by kind.",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.pushes, m.paths, m.duration, m.bytesSent, m.queued, m.events,
		stateCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetTargetSources tells which tree each target is pushed from (target
// name to the root); a target not in it gets an empty source label.
func (m *Metrics) SetTargetSources(sources map[string]string) { m.sources.Store(&sources) }

func (m *Metrics) sourceOf(target string) string {
	if s := m.sources.Load(); s != nil {
		return (*s)[target]
	}
	return ""
}

// Pushed counts a push.
func (m *Metrics) Pushed(target string, paths []string, took time.Duration, err error) {
	source := m.sourceOf(target)
	code := 0
	if err != nil {
		code, _, _ = pusher.CodeOf(err)
	} else {
		m.paths.WithLabelValues(target, source).Add(float64(len(paths)))
	}
	m.pushes.WithLabelValues(target, source, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(target, source).Observe(took.Seconds())
}

// BytesSent counts what a target reported sending (rsync: its --stats).
func (m *Metrics) BytesSent(target string, n int64) {
	m.bytesSent.WithLabelValues(target, m.sourceOf(target)).Add(float64(n))
}

// Queued counts paths committed to the queue.
func (m *Metrics) Queued(n int) { m.queued.Add(float64(n)) }

// Event counts a filesystem event of a kind ("create", "write", ...).
func (m *Metrics) Event(kind string) { m.events.WithLabelValues(kind).Inc() }

var (
	pendingDesc  = prometheus.NewDesc("sersyncd_pending_paths", "Paths waiting to be pushed, by target.", []string{"target", "source"}, nil)
	lagDesc      = prometheus.NewDesc("sersyncd_replication_lag_seconds", "Age of the oldest change not yet pushed, by target (0 when none waits).", []string{"target", "source"}, nil)
	failingDesc  = prometheus.NewDesc("sersyncd_target_consecutive_failures", "Pushes failed in a row, by target.", []string{"target", "source"}, nil)
	dirsDesc     = prometheus.NewDesc("sersyncd_watched_directories", "Directories with an inotify watch.", nil, nil)
	degradedDesc = prometheus.NewDesc("sersyncd_watch_degraded", "1 while some directories have no inotify watch (the watch limit) and full pushes stand in.", nil, nil)
	overflowDesc = prometheus.NewDesc("sersyncd_inotify_overflows_total", "Times the kernel's event queue overflowed.", nil, nil)
	// Exported so an alert on the lag follows <sersyncd healthLag> instead
	// of a copy of it (docs/monitoring/sersyncd.rules.yml).
	healthLagDesc = prometheus.NewDesc("sersyncd_health_lag_seconds", "The lag bound of /healthz (<sersyncd healthLag>): a target whose oldest pending change is older is unhealthy.", nil, nil)
	driftDesc     = prometheus.NewDesc("sersyncd_verify_drift_paths", "Paths that differed from the source (missing, differing, extra) at the last scheduled verify that could check the target.", []string{"target", "source"}, nil)
	verifiedDesc  = prometheus.NewDesc("sersyncd_verify_last_success_timestamp_seconds", "When the last scheduled verify that could check the target ran (Unix time).", []string{"target", "source"}, nil)
)

// SetSource sets where the gauges come from.
func (m *Metrics) SetSource(src Source) { m.src = src }

type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pendingDesc, lagDesc, failingDesc, dirsDesc, overflowDesc, degradedDesc, healthLagDesc, driftDesc, verifiedDesc} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.src.Snapshot()
	for _, t := range s.Targets {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(t.Pending), t.Name, t.Source)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, t.LagSeconds, t.Name, t.Source)
		ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue, float64(t.ConsecutiveFailures), t.Name, t.Source)
		if v := t.Verify; v != nil && !v.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(driftDesc, prometheus.GaugeValue, float64(v.Drift), t.Name, t.Source)
			ch <- prometheus.MustNewConstMetric(verifiedDesc, prometheus.GaugeValue, float64(v.LastSuccess.UnixNano())/1e9, t.Name, t.Source)
		}
	}
	ch <- prometheus.MustNewConstMetric(dirsDesc, prometheus.GaugeValue, float64(s.WatchedDirs))
	ch <- prometheus.MustNewConstMetric(overflowDesc, prometheus.CounterValue, float64(s.Overflows))
	degraded := 0.0
	if s.Degraded != "" {
		degraded = 1
	}
	ch <- prometheus.MustNewConstMetric(degradedDesc, prometheus.GaugeValue, degraded)
	ch <- prometheus.MustNewConstMetric(healthLagDesc, prometheus.GaugeValue, time.Duration(c.m.healthLag.Load()).Seconds())
}

// Unhealthy returns why the daemon is unhealthy, or nil: directories left
// without a watch, a target whose last push failed, or whose oldest pending
// change is older than maxLag.
func Unhealthy(s Snapshot, maxLag time.Duration) []string {
	var why []string
	if s.Degraded != "" {
		why = append(why, "not every directory is watched: "+s.Degraded)
	}
	for _, t := range s.Targets {
		if t.ConsecutiveFailures > 0 {
			why = append(why, fmt.Sprintf("target %s: %d failed pushes in a row: %s", t.Name, t.ConsecutiveFailures, t.LastError))
		} else if t.Lag() > maxLag {
			why = append(why, fmt.Sprintf("target %s: oldest pending change is %s old (bound %s)", t.Name, t.Lag().Round(time.Second), maxLag))
		}
	}
	return why
}

// Handler serves /metrics, /healthz and /debug/pprof/; /healthz holds
// the lag to maxLag, which /metrics exports as sersyncd_health_lag_seconds.
func (m *Metrics) Handler(maxLag time.Duration) http.Handler {
	m.healthLag.Store(int64(maxLag))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	// Profiles of a live daemon, on the same operator-only address.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if why := Unhealthy(m.src.Snapshot(), maxLag); len(why) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(why, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Server is the HTTP listener of the metrics.
type Server struct{ srv *http.Server }

// Serve listens on addr; it returns once the port is bound, so a bad
// address is an error at start rather than a line in the log.
func (m *Metrics) Serve(addr string, maxLag time.Duration) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(maxLag), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Server{srv: srv}, nil
}

// Close stops the listener.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
