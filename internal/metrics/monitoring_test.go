package metrics

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/status"
)

// exported returns the names of every series a daemon's /metrics can show,
// histograms' _bucket, _sum and _count included.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := New(&fakeSource{s: Snapshot{Targets: []status.Target{{Name: "t", Pending: 1, Verify: &status.Verify{LastSuccess: time.Now(), Drift: 1}}}}})
	m.Pushed("t", []string{"a"}, time.Second, nil)
	m.Pushed("t", []string{"a"}, time.Second, errors.New("x"))
	m.BytesSent("t", 1)
	m.Queued(1)
	m.Event("create")
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if ms := f.GetMetric(); len(ms) > 0 && ms[0].GetHistogram() != nil {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\b(?:sersyncd|process|go)_[a-z0-9_]+`)

// TestMonitoringUsesExportedMetrics: the alert rules and the dashboard in
// docs/monitoring name only series sersyncd exports, so a renamed metric
// or a typo cannot leave an alert silent or a panel empty.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	names := exported(t)
	rules, err := os.ReadFile("../../docs/monitoring/sersyncd.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile("../../docs/monitoring/sersyncd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("sersyncd-dashboard.json: %v", err)
	}
	sources := map[string]string{"sersyncd.rules.yml": string(rules)}
	var ids []int
	for _, p := range dash.Panels {
		if slices.Contains(ids, p.ID) {
			t.Errorf("dashboard: panel id %d twice", p.ID)
		}
		ids = append(ids, p.ID)
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("dashboard: panel %q: datasource %q, %d queries; want ${datasource} and a query", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, q := range p.Targets {
			sources["dashboard panel "+p.Title] += q.Expr + "\n"
		}
	}
	for _, v := range dash.Templating.List {
		sources["dashboard variables"] += v.Definition + "\n"
	}
	used := 0
	for where, text := range sources {
		for _, name := range metricName.FindAllString(text, -1) {
			used++
			if !names[name] {
				t.Errorf("%s: %s is not exported", where, name)
			}
		}
	}
	if used < 20 {
		t.Fatalf("only %d metric names found: the files' layout changed under this test", used)
	}
	for _, want := range []string{"SersyncdReplicationLag", "SersyncdTargetFailing", "SersyncdWatchDegraded", "SersyncdQueueGrowing"} {
		if !strings.Contains(string(rules), "alert: "+want+"\n") {
			t.Errorf("sersyncd.rules.yml: no alert %s", want)
		}
	}
}
