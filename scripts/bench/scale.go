package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/plain"
)

// scaleResult: sersyncd watching many directories, with one pending record
// per directory for a target that is down, then the target coming back.
type scaleResult struct {
	Dirs      int
	StartupS  float64 // exec until "sersyncd started"
	TouchS    float64 // writing one file into every directory
	SettledS  float64 // until sersyncd's CPU went quiet after that
	RSSKiB    int64   // VmRSS then
	HWMKiB    int64   // VmHWM then
	DBBytes   int64
	CPUS      float64 // sersyncd's CPU from start until settled
	DrainS    float64 // target started until it equals the source
	Drained   bool
	DrainNote string
	Err       string
}

func runScale(base, bin string, s sizes) *scaleResult {
	res := &scaleResult{Dirs: s.scaleDirs}
	dir := filepath.Join(base, "scale")
	defer os.RemoveAll(dir)
	e := &env{dir: dir, src: filepath.Join(dir, "src")}
	fail := func(format string, args ...any) *scaleResult {
		res.Err = fmt.Sprintf(format, args...)
		return res
	}
	port, err := plain.FreePort()
	if err != nil {
		return fail("%v", err)
	}
	e.port = port
	var rels []string
	for i := 0; i < s.scaleDirs; i++ {
		rel := fmt.Sprintf("d%03d/d%04d", i/1000, i%1000)
		if err := os.MkdirAll(filepath.Join(e.src, rel), 0o755); err != nil {
			return fail("%v", err)
		}
		rels = append(rels, rel)
	}
	// The target's daemon is configured but not running yet: it is down.
	target := &rsyncd{ip: "127.0.0.1", module: "backup0", port: port, dir: filepath.Join(dir, "backup0")}
	if err := os.MkdirAll(target.dir, 0o755); err != nil {
		return fail("%v", err)
	}
	c := &sersyncdC{bin: bin}
	e.ds = []*rsyncd{target}
	defer c.stop()
	if err := c.start(e, 120*time.Second); err != nil {
		return fail("%v", err)
	}
	res.StartupS = c.started.Seconds()
	t0 := time.Now()
	var changed []string
	for _, rel := range rels {
		f := rel + "/pending"
		if err := writeFile(e.src, f, []byte("x")); err != nil {
			return fail("%v", err)
		}
		changed = append(changed, f)
	}
	res.TouchS = time.Since(t0).Seconds()
	// Quiet: less than 20 ms of CPU in each of 3 consecutive seconds.
	last, quiet := c.cpu(), 0
	for i := 0; i < 180 && quiet < 3; i++ {
		time.Sleep(time.Second)
		now := c.cpu()
		if now-last < 0.02 {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
	res.SettledS = time.Since(t0).Seconds()
	res.CPUS = c.cpu()
	res.RSSKiB = statusKiB(c.p.pid(), "VmRSS")
	res.HWMKiB = statusKiB(c.p.pid(), "VmHWM")
	if fi, err := os.Stat(filepath.Join(dir, "queue.db")); err == nil {
		res.DBBytes = fi.Size()
	}
	// The target comes back: how long until the backlog is pushed.
	d, err := startRsyncd(dir, "127.0.0.1", "backup0", port)
	if err != nil {
		return fail("%v", err)
	}
	defer d.p.stop(time.Second)
	d0 := time.Now()
	chk := newPathsChecker(e.src, changed)
	for time.Since(d0) < 300*time.Second {
		if chk.ok(d.dir) {
			res.Drained = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.DrainS = time.Since(d0).Seconds()
	if res.Drained {
		if diff := firstDiff(e.src, d.dir); diff != "" {
			res.Drained = false
			res.DrainNote = "final comparison: " + diff
		}
	} else {
		res.DrainNote = fmt.Sprintf("%d of %d files arrived within 300 s", chk.next[d.dir], len(changed))
	}
	return res
}
