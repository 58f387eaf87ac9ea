package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// result is one cell: a contender on a workload with K targets.
type result struct {
	Contender, Workload string
	K                   int
	Converged           bool
	Seconds             float64 // from the end of the workload until every target equals the source
	Summary             string  // what "time to converge" means for this workload, when not Seconds
	CPU                 float64 // contender + its rsyncs, workload start until convergence
	DaemonCPU           float64 // the receiving rsync daemons, workload start until convergence
	FirstS              float64 // from the workload's first write until every target equals the source; 0: not measured
	WriterS             float64 // the workload's writer, beside the contender; 0: not measured
	WriterAloneS        float64 // the same writer before the contender started, in a tree nothing watches
	RSSKiB              int64
	Sessions            int
	RecvBytes           int64
	Notes               []string
	Metrics             map[string]float64
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

type sizes struct {
	latencyN   int
	savedN     int
	burstFiles int
	treeFiles  int
	sustained  time.Duration
	rate       int
	bigMiB     int
	scaleDirs  int
	renameMiB  int
}

// workload prepares the source tree (copied to every target before the
// contender starts) and then runs, filling in r.
type workload struct {
	name    string
	bound   time.Duration // per convergence wait
	prepare func(src string, s sizes) error
	run     func(e *env, c contender, s sizes, r *result) error
	// alone, when set, times the workload's writer in a tree below dir
	// that nothing watches, before the contender starts.
	alone func(dir string, s sizes) (time.Duration, error)
	// ssh: the contenders reach the targets over ssh (sshd.go); only the
	// contenders that can are run.
	ssh bool
}

func workloads() []workload {
	return []workload{
		{name: "latency", bound: 10 * time.Second, prepare: mkdirs("lat"), run: runLatency},
		{name: "burst", bound: 120 * time.Second, prepare: mkdirs("burst"), run: runBurst, alone: aloneBurst},
		{name: "tree1k", bound: 60 * time.Second, prepare: prepTree(1000), run: runTree},
		{name: "tree100k", bound: 120 * time.Second, prepare: prepTree(0), run: runTree},
		{name: "sustained", bound: 120 * time.Second, prepare: prepSustained, run: runSustained},
		{name: "bigfile", bound: 180 * time.Second, prepare: mkdirs("big"), run: runBig},
		{name: "mixed", bound: 60 * time.Second, prepare: prepMixed, run: runMixed},
		{name: "saved", bound: 10 * time.Second, prepare: prepSaved, run: runSaved},
		{name: "session", bound: 60 * time.Second, prepare: prepSession, run: runSession, alone: aloneSession},
		{name: "rename", bound: 60 * time.Second, prepare: prepRename, run: runRename},
		{name: "rename-ssh", bound: 60 * time.Second, prepare: prepRename, run: runRename, ssh: true},
	}
}

var boundOf = map[string]time.Duration{}

func mkdirs(dirs ...string) func(string, sizes) error {
	return func(src string, _ sizes) error {
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
				return err
			}
		}
		return nil
	}
}

func writeFile(src, rel string, data []byte) error {
	return os.WriteFile(filepath.Join(src, rel), data, 0o644)
}

func content(seed string, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewSource(int64(len(seed)) * 7919))
	for i := range b {
		b[i] = byte('a' + r.Intn(26))
	}
	copy(b, seed)
	return b
}

// converge ends a workload: it lets the contender act (the limit runs its
// rsyncs here), then polls every target until chk passes or the bound.
func converge(e *env, c contender, chk checker, changed []string, bound, every time.Duration) (time.Duration, bool, error) {
	t0 := time.Now()
	if err := c.after(e, changed); err != nil {
		return time.Since(t0), false, err
	}
	deadline := t0.Add(bound)
	for {
		all := true
		for _, t := range e.targets() {
			if !chk.ok(t) {
				all = false
				break
			}
		}
		if all {
			return time.Since(t0), true, nil
		}
		if time.Now().After(deadline) {
			return time.Since(t0), false, nil
		}
		time.Sleep(every)
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// (1) one small file at a time, each waited for on every target.
func runLatency(e *env, c contender, s sizes, r *result) error {
	var lats []time.Duration
	failed := 0
	var total time.Duration
	for i := 0; i < s.latencyN && failed < 3; i++ {
		rel := fmt.Sprintf("lat/f%03d", i)
		if err := writeFile(e.src, rel, content(rel, 200)); err != nil {
			return err
		}
		d, ok, err := converge(e, c, newPathsChecker(e.src, []string{rel}), []string{rel}, 10*time.Second, time.Millisecond)
		if err != nil {
			return err
		}
		total += d
		if !ok {
			failed++
			r.note("change %d not on every target after 10 s", i)
			continue
		}
		lats = append(lats, d)
		time.Sleep(50 * time.Millisecond)
	}
	r.Converged = failed == 0
	med, p99 := percentile(lats, 0.5), percentile(lats, 0.99)
	r.Seconds = total.Seconds()
	r.Summary = fmt.Sprintf("median %s, p99 %s (n=%d)", ms(med), ms(p99), len(lats))
	r.Metrics["median_ms"] = float64(med.Microseconds()) / 1000
	r.Metrics["p99_ms"] = float64(p99.Microseconds()) / 1000
	return nil
}

// (2) files of 1 KiB in new directories of 100 files each, as fast as
// possible; time to converge from the last write, and from the first.
func runBurst(e *env, c contender, s sizes, r *result) error {
	t0 := time.Now()
	changed, err := writeBurst(e.src, s)
	if err != nil {
		return err
	}
	wrote := time.Since(t0)
	err = finish(e, c, newPathsChecker(e.src, changed), changed, boundOf["burst"], r)
	r.WriterS = wrote.Seconds()
	r.FirstS = wrote.Seconds() + r.Seconds
	return err
}

func writeBurst(src string, s sizes) ([]string, error) {
	var changed []string
	data := content("burst", 1024)
	for i := 0; i < s.burstFiles; i++ {
		dir := fmt.Sprintf("burst/d%03d", i/100)
		if i%100 == 0 {
			if err := os.Mkdir(filepath.Join(src, dir), 0o755); err != nil {
				return nil, err
			}
			changed = append(changed, dir)
		}
		rel := fmt.Sprintf("%s/f%03d", dir, i%100)
		data[0], data[1] = byte(i), byte(i>>8)
		if err := writeFile(src, rel, data); err != nil {
			return nil, err
		}
		changed = append(changed, rel)
	}
	return changed, nil
}

func finish(e *env, c contender, chk checker, changed []string, bound time.Duration, r *result) error {
	d, ok, err := converge(e, c, chk, changed, bound, 10*time.Millisecond)
	r.Seconds, r.Converged = d.Seconds(), ok
	return err
}

// prepTree builds files files (0: s.treeFiles) of 512 bytes, 100 per directory.
func prepTree(files int) func(string, sizes) error {
	return func(src string, s sizes) error {
		if files == 0 {
			files = s.treeFiles
		}
		data := content("tree", 512)
		for i := 0; i < files; i++ {
			dir := fmt.Sprintf("tree/d%04d", i/100)
			if i%100 == 0 {
				if err := os.MkdirAll(filepath.Join(src, dir), 0o755); err != nil {
					return err
				}
			}
			data[0], data[1], data[2] = byte(i), byte(i>>8), byte(i>>16)
			if err := writeFile(src, fmt.Sprintf("%s/f%03d", dir, i%100), data); err != nil {
				return err
			}
		}
		return nil
	}
}

// (3) 10 files change in an existing tree.
// treeRounds: the tree workloads change 10 files this many times and
// report the median round. One round's time depends on whether the 10
// changes landed in one batch or two, so a single round is mostly noise.
const treeRounds = 3

func runTree(e *env, c contender, s sizes, r *result) error {
	n := 0
	for i := 0; i < 100000000; i++ {
		if _, err := os.Stat(filepath.Join(e.src, fmt.Sprintf("tree/d%04d", i))); err != nil {
			n = i
			break
		}
	}
	var rounds []time.Duration
	r.Converged = true
	for round := 0; round < treeRounds; round++ {
		var changed []string
		for j := 0; j < 10; j++ {
			dir := (j*n/10 + n/20 + round) % n
			rel := fmt.Sprintf("tree/d%04d/f%03d", dir, (j*37+round*11)%100)
			// Written aside and renamed over the old file, as editors and
			// deploy tools do: the targets were prepared as hard links of the
			// source (cp -al), which an in-place write would change too.
			tmp := filepath.Join(e.src, filepath.Dir(rel), ".tmp-"+filepath.Base(rel))
			if err := os.WriteFile(tmp, content(fmt.Sprintf("%s changed %d", rel, round), 600), 0o644); err != nil {
				return err
			}
			if err := os.Rename(tmp, filepath.Join(e.src, rel)); err != nil {
				return err
			}
			changed = append(changed, rel)
		}
		d, ok, err := converge(e, c, newPathsChecker(e.src, changed), changed, boundOf[r.Workload], 10*time.Millisecond)
		if err != nil {
			return err
		}
		rounds = append(rounds, d)
		if !ok {
			r.Converged = false
			r.note("round %d did not converge within %s", round+1, boundOf[r.Workload])
			break
		}
		if d > 10*time.Second {
			r.note("one round only: it took %.1f s", d.Seconds())
			break
		}
		// Rounds are independent: far enough apart that no contender sees
		// them as one stream.
		time.Sleep(1500 * time.Millisecond)
	}
	med := percentile(rounds, 0.5)
	r.Seconds = med.Seconds()
	var all []string
	for _, d := range rounds {
		all = append(all, fmt.Sprintf("%.3f", d.Seconds()))
	}
	r.Summary = fmt.Sprintf("median %.3f s of %d rounds (%s s)", med.Seconds(), len(rounds), strings.Join(all, ", "))
	return nil
}

func prepSustained(src string, _ sizes) error {
	for i := 0; i < 100; i++ {
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("sus/d%02d", i)), 0o755); err != nil {
			return err
		}
	}
	return nil
}

type marker struct {
	rel     string
	written time.Time
}

// watchMarkers records, for every marker received on ch, when it was on
// every target; it stops at deadline.
func watchMarkers(e *env, ch <-chan marker, deadline time.Time) (lags []time.Duration, missing int) {
	var pending []marker
	open := true
	for (open || len(pending) > 0) && time.Now().Before(deadline) {
		for open {
			select {
			case m, ok := <-ch:
				if !ok {
					open = false
					continue
				}
				pending = append(pending, m)
				continue
			default:
			}
			break
		}
		now := time.Now()
		kept := pending[:0]
		for _, m := range pending {
			all := true
			for _, t := range e.targets() {
				if !sameEntry(e.src, t, m.rel) {
					all = false
					break
				}
			}
			if all {
				lags = append(lags, now.Sub(m.written))
			} else {
				kept = append(kept, m)
			}
		}
		pending = kept
		time.Sleep(5 * time.Millisecond)
	}
	return lags, len(pending)
}

// (4) s.rate new files per second for s.sustained, plus a marker each second.
func runSustained(e *env, c contender, s sizes, r *result) error {
	markers := make(chan marker, 1000)
	var lags []time.Duration
	var missing int
	var wg sync.WaitGroup
	if c.isDaemon() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lags, missing = watchMarkers(e, markers, time.Now().Add(s.sustained+boundOf["sustained"]))
		}()
	}
	var changed []string
	data := content("sustained", 512)
	cpu0, self0 := c.cpu(), selfCPU(c)
	t0 := time.Now()
	n, nextMarker := 0, 0
	for time.Since(t0) < s.sustained {
		due := int(time.Since(t0).Seconds() * float64(s.rate))
		for ; n < due; n++ {
			rel := fmt.Sprintf("sus/d%02d/f%06d", n%100, n)
			data[0], data[1], data[2] = byte(n), byte(n>>8), byte(n>>16)
			if err := writeFile(e.src, rel, data); err != nil {
				close(markers)
				return err
			}
			changed = append(changed, rel)
		}
		if time.Since(t0) >= time.Duration(nextMarker)*time.Second {
			rel := fmt.Sprintf("sus/marker-%03d", nextMarker)
			if err := writeFile(e.src, rel, []byte(time.Now().String())); err != nil {
				close(markers)
				return err
			}
			changed = append(changed, rel)
			if c.isDaemon() {
				markers <- marker{rel, time.Now()}
			}
			nextMarker++
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	cpuDuring := c.cpu() - cpu0
	selfDuring := selfCPU(c) - self0
	close(markers)
	err := finish(e, c, newPathsChecker(e.src, changed), changed, boundOf["sustained"], r)
	wg.Wait()
	rate := float64(n) / elapsed.Seconds()
	if c.isDaemon() {
		lagMax, lagMed := percentile(lags, 1), percentile(lags, 0.5)
		r.Summary = fmt.Sprintf("after: %.2f s; lag during: median %s, max %s (%d markers, %d never arrived); CPU during: %.1f%% of a core, the daemon process itself %.1f%%",
			r.Seconds, ms(lagMed), ms(lagMax), len(lags), missing, 100*cpuDuring/elapsed.Seconds(), 100*selfDuring/elapsed.Seconds())
		r.Metrics["self_cpu_pct"] = 100 * selfDuring / elapsed.Seconds()
		r.Metrics["lag_max_ms"] = float64(lagMax.Microseconds()) / 1000
		r.Metrics["missing_markers"] = float64(missing)
		r.Metrics["cpu_pct"] = 100 * cpuDuring / elapsed.Seconds()
		if missing > 0 {
			r.Converged = false
		}
	} else {
		r.Summary = fmt.Sprintf("after: %.2f s (no lag during: nothing runs)", r.Seconds)
	}
	r.note("%d files in %.1f s (%.0f/s)", n, elapsed.Seconds(), rate)
	return err
}

// (5) one big file written in 1 MiB appends at about 100 MiB/s.
func runBig(e *env, c contender, s sizes, r *result) error {
	rel := "big/file.bin"
	f, err := os.Create(filepath.Join(e.src, rel))
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	rnd := rand.New(rand.NewSource(1))
	rnd.Read(chunk)
	t0 := time.Now()
	for i := 0; i < s.bigMiB; i++ {
		chunk[0], chunk[1] = byte(i), byte(i>>8)
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return err
		}
		if d := time.Until(t0.Add(time.Duration(i+1) * 10 * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	r.note("written in %.1f s", time.Since(t0).Seconds())
	changed := []string{rel}
	err = finish(e, c, newPathsChecker(e.src, changed), changed, boundOf["bigfile"], r)
	r.Metrics["file_bytes"] = float64(s.bigMiB) * (1 << 20)
	return err
}

func prepMixed(src string, _ sizes) error {
	for d := 0; d < 10; d++ {
		for f := 0; f < 10; f++ {
			rel := fmt.Sprintf("mix/d%02d/f%02d", d, f)
			if err := os.MkdirAll(filepath.Dir(filepath.Join(src, rel)), 0o755); err != nil {
				return err
			}
			if err := writeFile(src, rel, content(rel, 200)); err != nil {
				return err
			}
		}
	}
	return nil
}

// hostileNames are created by the mixed workload.
var hostileNames = []string{
	"with space.txt", "new\nline", "-leading-dash", "--delete", "star*", `quote"double`, "quote'single",
	"\xff\xfe invalid utf-8", "back\\slash", " leading space", "semi;colon $(x) `y`",
}

// (6) deletes, directory renames, hostile names, a symlink, edits.
func runMixed(e *env, c contender, s sizes, r *result) error {
	var changed []string
	p := func(rel string) string { return filepath.Join(e.src, rel) }
	steps := []func() error{
		func() error { // delete files
			for f := 0; f < 5; f++ {
				rel := fmt.Sprintf("mix/d00/f%02d", f)
				changed = append(changed, rel)
				if err := os.Remove(p(rel)); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { changed = append(changed, "mix/d09"); return os.RemoveAll(p("mix/d09")) },
		func() error {
			changed = append(changed, "mix/d08")
			return os.Rename(p("mix/d08"), p("mix/d08 renamed"))
		},
		func() error {
			changed = append(changed, "mix/d07")
			return os.Rename(p("mix/d07"), p("mix/-d07*renamed\n"))
		},
		func() error {
			changed = append(changed, "mix/d06")
			return os.Rename(p("mix/d06"), p("mix/d05/d06-moved-inside"))
		},
		func() error {
			if err := os.Mkdir(p("mix/-dir with space"), 0o755); err != nil {
				return err
			}
			for _, n := range hostileNames {
				for _, dir := range []string{"mix", "mix/-dir with space"} {
					rel := dir + "/" + n
					if err := writeFile(e.src, rel, content(rel, 100)); err != nil {
						return err
					}
				}
			}
			return nil
		},
		func() error { return os.Symlink("with space.txt", p("mix/link to space")) },
		func() error { return writeFile(e.src, "mix/d01/f01", content("edited", 333)) },
		func() error {
			changed = append(changed, "mix/d02/f02")
			return os.Rename(p("mix/d02/f02"), p("mix/d02/f02 renamed"))
		},
		func() error { // a file replaced by a directory
			if err := os.Remove(p("mix/d03/f03")); err != nil {
				return err
			}
			if err := os.Mkdir(p("mix/d03/f03"), 0o755); err != nil {
				return err
			}
			return writeFile(e.src, "mix/d03/f03/inner", []byte("x"))
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	// Everything that exists now below the touched places, for the limit.
	seen := map[string]bool{}
	for _, c := range changed {
		seen[c] = true
	}
	for _, root := range []string{"mix/d08 renamed", "mix/-d07*renamed\n", "mix/d05/d06-moved-inside", "mix/-dir with space", "mix/d03/f03"} {
		_ = filepath.Walk(p(root), func(path string, _ os.FileInfo, err error) error {
			if err == nil {
				rel, _ := filepath.Rel(e.src, path)
				if !seen[rel] {
					seen[rel] = true
					changed = append(changed, rel)
				}
			}
			return nil
		})
	}
	for _, rel := range append(append([]string{}, hostileNames...), "link to space") {
		rel = "mix/" + rel
		if !seen[rel] {
			changed = append(changed, rel)
		}
	}
	changed = append(changed, "mix/d01/f01", "mix/d02/f02 renamed")
	r.note("%d hostile names incl. newline, leading '-', '*', quotes, invalid UTF-8", 2*len(hostileNames))
	return finish(e, c, fullChecker{e.src}, changed, boundOf["mixed"], r)
}
