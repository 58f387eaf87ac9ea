package rsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestProbeAddr(t *testing.T) {
	tests := []struct {
		name string
		t    *Target
		want string
	}{
		{"daemon", New(Options{Dest: "10.0.0.1::mod"}), "10.0.0.1:873"},
		{"daemon with user and port", New(Options{Dest: "us@er@backup.example::mod", Port: 8873}), "backup.example:8873"},
		{"daemon on IPv6", New(Options{Dest: "user@[fe80::1]::mod"}), "[fe80::1]:873"},
		{"ssh", New(Options{Dest: "root@10.0.0.2:/backup", SSHCommand: "ssh"}), "10.0.0.2:22"},
		{"ssh with port", New(Options{Dest: "10.0.0.2:/b:c", SSHCommand: "ssh -p 2222", Port: 2222}), "10.0.0.2:2222"},
		{"ssh on IPv6", New(Options{Dest: "[::1]:/backup", SSHCommand: "ssh"}), "[::1]:22"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.t.probeAddr()
			if err != nil || got != tc.want {
				t.Errorf("probeAddr(%q) = %q, %v; want %q", tc.t.opt.Dest, got, err, tc.want)
			}
		})
	}
}

// TestTargetDownForAnHour: a real rsync daemon stops while changes are
// queued for it, the pool's backoff stands at an hour (the clock shortened
// by BackoffMin, as after an hour of failures), and the daemon comes back
// on the same port: the target must equal the source, byte for byte,
// within 5 s, and the daemon must not have been sent an rsync while down.
func TestTargetDownForAnHour(t *testing.T) {
	testutil.Integration(t)
	d := testutil.StartDaemon(t, testutil.DaemonOptions{})
	src := t.TempDir()
	tgt := New(Options{Source: src, Dest: "127.0.0.1::" + d.Module, Port: d.Port, Params: []string{"-artuz"}, Standby: 10 * time.Second})
	name := tgt.Name()
	q, _ := testutil.OpenQueue(t, queue.Open, "", name)
	var pushes atomic.Int32
	obs := observerFunc(func(string, []string, time.Duration, error) { pushes.Add(1) })
	p := pusher.New(q, []pusher.Target{tgt}, pusher.Options{Workers: 2, BackoffMin: time.Hour, BackoffMax: time.Hour, Log: testutil.QuietLog(), Observer: obs})
	stop, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(stop, context.Background()) }()
	t.Cleanup(func() { cancel(); <-done })

	write := func(n int) []string {
		var paths []string
		for i := 0; i < 20; i++ {
			rel := fmt.Sprintf("d%d/f%02d", n, i)
			mkfile(t, src, rel, strings.Repeat(rel, 100*i))
			paths = append(paths, fmt.Sprintf("d%d", n), rel)
		}
		return paths
	}
	if err := q.Add(write(0)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitConverged(t, src, d.Dir, 10*time.Second, "before the outage")

	d.Stop()
	if err := q.Add(write(1)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the push to the stopped daemon fails", func() bool { return p.Status()[0].ConsecutiveFailures > 0 })
	if left := time.Until(p.Status()[0].RetryAt); left < 50*time.Minute {
		t.Fatalf("backoff %v, want about an hour", left)
	}
	failedPushes := pushes.Load()
	// Changes while it is down, and several probes that find it down.
	for n := 2; n < 4; n++ {
		if err := q.Add(write(n)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * pusher.DefaultProbeEvery)
	}
	if n := pushes.Load(); n != failedPushes {
		t.Errorf("%d rsyncs to the stopped daemon during its backoff, want none", n-failedPushes)
	}
	if err := os.Remove(filepath.Join(src, "d0/f03")); err != nil {
		t.Fatal(err)
	}
	if err := q.Add([]string{"d0/f03"}); err != nil {
		t.Fatal(err)
	}

	d.Start()
	back := time.Now()
	testutil.WaitConverged(t, src, d.Dir, 5*time.Second, "within 5 s of the daemon's return")
	t.Logf("target equal %v after the daemon came back", time.Since(back).Round(time.Millisecond))
	testutil.Eventually(t, 5*time.Second, "queue empty, nothing failing", func() bool {
		failed, _, err := q.Failing(name)
		return err == nil && failed == 0 && q.Pending(name) == 0 && p.Status()[0].ConsecutiveFailures == 0
	})
}

type observerFunc func(target string, paths []string, took time.Duration, err error)

func (f observerFunc) Pushed(target string, paths []string, took time.Duration, err error) {
	f(target, paths, took, err)
}
