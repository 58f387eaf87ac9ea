// Command bench compares sersyncd with lsyncd, the classic
// inotifywait|rsync script and "the limit" (one rsync of exactly the changed
// set) on the same workloads, against real rsync daemons on 127.0.0.x, and
// writes a Markdown report. See docs/BENCHMARKS.md.
//
//	go run ./scripts/bench -contenders sersyncd -workloads burst -k 3
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/plain"
)

var allContenders = []string{"sersyncd", "lsyncd", "script", "limit"}

// startQuiet is how long every contender is left alone after it is ready
// and before the workload starts.
const startQuiet = 500 * time.Millisecond

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	var (
		contenders = flag.String("contenders", strings.Join(allContenders, ","), "comma-separated: sersyncd, lsyncd, script, limit")
		wls        = flag.String("workloads", "latency,saved,session,burst,tree1k,tree100k,sustained,bigfile,mixed,rename,rename-ssh,scale", "comma-separated workloads (scale: sersyncd's RSS and start-up with many directories)")
		ks         = flag.String("k", "1,3", "comma-separated target counts")
		quick      = flag.Bool("quick", false, "small subset: latency (20), saved (10), session, burst (2,000), mixed, rename, rename-ssh; K=3; sersyncd, limit, lsyncd (explicit flags still win)")
		out        = flag.String("out", "", "Markdown file to write (default docs/BENCHMARKS.md, or docs/BENCHMARKS-quick.md with -quick; - for stdout only)")
		bin        = flag.String("bin", "bin/sersyncd", "sersyncd binary (built with go build when missing)")
		workdir    = flag.String("workdir", "", "parent of the scratch directory (default: /dev/shm when it is a tmpfs, else $TMPDIR); a new directory in it is removed at the end")
		notesFile  = flag.String("notes", "scripts/bench/notes.md", "Markdown appended to the full report (observations about the recorded run)")
		skip       = flag.String("skip", "", "comma-separated workload:contender cells not to run, e.g. tree100k:script")
		install    = flag.Bool("install", true, "apt-get install rsync, lsyncd, inotify-tools when missing")
		s          sizes
	)
	flag.IntVar(&s.latencyN, "latency-n", 50, "latency: number of changes")
	flag.IntVar(&s.savedN, "saved-n", 20, "saved: number of saves")
	flag.IntVar(&s.burstFiles, "burst-files", 10000, "burst: files")
	flag.IntVar(&s.treeFiles, "tree-files", 100000, "tree100k: files in the existing tree")
	flag.DurationVar(&s.sustained, "sustained", 30*time.Second, "sustained: duration")
	flag.IntVar(&s.rate, "rate", 500, "sustained: changes per second")
	flag.IntVar(&s.bigMiB, "big-mib", 500, "bigfile: MiB")
	flag.IntVar(&s.scaleDirs, "scale-dirs", 100000, "scale: directories")
	flag.IntVar(&s.renameMiB, "rename-mib", 200, "rename: MiB in the renamed directory")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["contenders"] {
			*contenders = "sersyncd,limit,lsyncd"
		}
		if !set["workloads"] {
			*wls = "latency,saved,session,burst,mixed,rename,rename-ssh"
		}
		if !set["k"] {
			*ks = "3"
		}
		if !set["latency-n"] {
			s.latencyN = 20
		}
		if !set["saved-n"] {
			s.savedN = 10
		}
		if !set["burst-files"] {
			s.burstFiles = 2000
		}
	}
	if *out == "" {
		*out = "docs/BENCHMARKS.md"
		if *quick {
			*out = "docs/BENCHMARKS-quick.md"
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping every process started\n", sig)
		killAll()
		os.Exit(130)
	}()
	defer killAll()

	if err := ensureTools(*install); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	absBin, err := ensureBinary(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	parent := *workdir
	if parent == "" {
		parent = defaultScratch()
	}
	dir, err := os.MkdirTemp(parent, "sersyncd-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	var kList []int
	for _, f := range strings.Split(*ks, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 || k > 20 {
			fmt.Fprintf(os.Stderr, "bench: bad -k %q\n", *ks)
			return 2
		}
		kList = append(kList, k)
	}
	known := map[string]workload{}
	for _, w := range workloads() {
		known[w.name] = w
		boundOf[w.name] = w.bound
	}
	var wList []workload
	doScale := false
	for _, n := range strings.Split(*wls, ",") {
		n = strings.TrimSpace(n)
		if n == "scale" {
			doScale = true
			continue
		}
		w, ok := known[n]
		if !ok {
			fmt.Fprintf(os.Stderr, "bench: unknown workload %q\n", n)
			return 2
		}
		wList = append(wList, w)
	}
	cList := strings.Split(*contenders, ",")
	for i, c := range cList {
		cList[i] = strings.TrimSpace(c)
		if _, err := newContender(cList[i], absBin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
	}

	skipped := map[string]bool{}
	for _, c := range strings.Split(*skip, ",") {
		skipped[strings.TrimSpace(c)] = true
	}
	rep := &report{started: time.Now(), load: loadAvg(), scratch: describeScratch(dir), notes: *notesFile, command: commandLine(), quick: *quick, sizes: s}
	for _, w := range wList {
		for _, k := range kList {
			for _, cn := range cList {
				if skipped[w.name+":"+cn] || (w.ssh && cn != "sersyncd" && cn != "lsyncd") {
					continue // the limit and the script push to daemons only
				}
				r := runCell(dir, absBin, cn, w, k, s)
				rep.results = append(rep.results, r)
				fmt.Fprintf(os.Stderr, "bench: %s\n", r.line())
			}
		}
	}
	if doScale {
		rep.scale = runScale(dir, absBin, s)
		fmt.Fprintf(os.Stderr, "bench: scale: %+v\n", *rep.scale)
	}
	md := rep.markdown(wList, kList, cList)
	fmt.Print(md)
	if *out != "-" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", *out)
	}
	return 0
}

func commandLine() string {
	if c := os.Getenv("BENCH_COMMAND"); c != "" {
		return c
	}
	return "go run ./scripts/bench " + strings.Join(os.Args[1:], " ")
}

func ensureTools(install bool) error {
	need := map[string]string{"rsync": "rsync", "lsyncd": "lsyncd", "inotifywait": "inotify-tools"}
	var missing []string
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !install || os.Geteuid() != 0 {
		return fmt.Errorf("missing %s (run as root to install, or apt-get install -y %s)", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	fmt.Fprintf(os.Stderr, "bench: installing %s\n", strings.Join(missing, " "))
	if _, err := run("apt-get", append([]string{"install", "-y"}, missing...)...); err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if out, err := run("apt-get", "update"); err != nil {
			return fmt.Errorf("apt-get update: %v: %s", err, tail(out, 1000))
		}
		if out, err := run("apt-get", append([]string{"install", "-y"}, missing...)...); err != nil {
			return fmt.Errorf("apt-get install: %v: %s", err, tail(out, 1000))
		}
	}
	return nil
}

func ensureBinary(bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err == nil {
		return abs, nil
	}
	if out, err := run("go", "build", "-o", abs, "./cmd/sersyncd"); err != nil {
		return "", fmt.Errorf("go build: %v: %s", err, out)
	}
	return abs, nil
}

// runCell runs one contender on one workload with k targets, from fresh
// daemons and trees, and always stops what it started.
func runCell(base, bin, cname string, w workload, k int, s sizes) (r *result) {
	r = &result{Contender: cname, Workload: w.name, K: k, Metrics: map[string]float64{}}
	dir := filepath.Join(base, fmt.Sprintf("%s-%s-k%d", w.name, cname, k))
	defer os.RemoveAll(dir)
	fail := func(format string, args ...any) *result {
		r.Converged = false
		r.note("error: "+format, args...)
		return r
	}
	e := &env{dir: dir, src: filepath.Join(dir, "src")}
	if err := os.MkdirAll(e.src, 0o755); err != nil {
		return fail("%v", err)
	}
	port, err := plain.FreePort()
	if err != nil {
		return fail("%v", err)
	}
	e.port = port
	for i := 0; i < k; i++ {
		d, err := startRsyncd(dir, fmt.Sprintf("127.0.0.%d", i+1), fmt.Sprintf("backup%d", i), port)
		if err != nil {
			return fail("%v", err)
		}
		defer d.p.stop(time.Second)
		e.ds = append(e.ds, d)
	}
	if w.ssh {
		if e.ssh, err = startSSH(dir, k); err != nil {
			return fail("%v", err)
		}
		defer e.ssh.stop()
	}
	t0 := time.Now()
	if err := w.prepare(e.src, s); err != nil {
		return fail("prepare: %v", err)
	}
	cpFlags := "-a"
	if strings.HasPrefix(w.name, "tree") {
		cpFlags = "-al" // hard links: creating 100k files per target takes minutes here
	}
	for _, d := range e.ds {
		if out, err := run("cp", cpFlags, e.src+"/.", d.dir+"/"); err != nil {
			return fail("cp: %v: %s", err, out)
		}
	}
	if d := time.Since(t0); d > 5*time.Second {
		fmt.Fprintf(os.Stderr, "bench: %s: prepared source and %d targets in %.1f s\n", w.name, k, d.Seconds())
	}
	if w.alone != nil {
		d, err := w.alone(dir, s)
		if err != nil {
			return fail("writer alone: %v", err)
		}
		r.WriterAloneS = d.Seconds()
	}
	c, _ := newContender(cname, bin)
	defer c.stop()
	if err := c.start(e, 300*time.Second); err != nil {
		return fail("%v", err)
	}
	// What a contender does right after it says it is ready is start-up
	// work, not the workload's: sersyncd's standby rsyncs connecting (over
	// ssh, a handshake per target, 0.3 s of CPU each here), which the
	// rename-ssh cell's rename, made at once, competed with (0.95 s -> 1.3 s
	// to converge at K = 3).
	time.Sleep(startQuiet)
	offsets := make([]int64, k)
	for i, d := range e.ds {
		offsets[i] = d.logSize()
	}
	r.note("load avg %s", loadAvg())
	cpu0, self0, dcpu0 := c.cpu(), selfCPU(c), e.daemonsCPU()
	err = w.run(e, c, s, r)
	r.CPU = c.cpu() - cpu0
	r.DaemonCPU = e.daemonsCPU() - dcpu0
	if _, script := c.(*scriptC); c.isDaemon() && !script {
		r.note("daemon process itself %.2f CPU s", selfCPU(c)-self0)
	}
	r.RSSKiB = c.rssKiB()
	if err != nil {
		return fail("%v", err)
	}
	time.Sleep(200 * time.Millisecond) // let the daemons' logs be written
	for i, d := range e.ds {
		n, b := d.sessions(offsets[i])
		r.Sessions += n
		r.RecvBytes += b
	}
	// The final verdict: every target compared with the source, byte for byte.
	if r.Converged {
		for i, t := range e.targets() {
			if d := firstDiff(e.src, t); d != "" {
				r.Converged = false
				r.note("final comparison, target %d: %s", i, d)
			}
		}
	}
	return r
}

func (r *result) line() string {
	s := fmt.Sprintf("%s K=%d %s: converged=%t %.3f s cpu=%.2f s daemons cpu=%.2f s rss=%d KiB sessions=%d recv=%.1f MiB",
		r.Workload, r.K, r.Contender, r.Converged, r.Seconds, r.CPU, r.DaemonCPU, r.RSSKiB, r.Sessions, float64(r.RecvBytes)/(1<<20))
	if r.FirstS > 0 {
		s += fmt.Sprintf(" first-write→equal=%.3f s", r.FirstS)
	}
	if r.WriterS > 0 {
		s += fmt.Sprintf(" writer=%.3f s (alone %.3f s)", r.WriterS, r.WriterAloneS)
	}
	if r.Summary != "" {
		s += " [" + r.Summary + "]"
	}
	if len(r.Notes) > 0 {
		s += " notes: " + strings.Join(r.Notes, "; ")
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// selfCPU is the CPU seconds of the daemon process alone, without its rsyncs.
func selfCPU(c contender) float64 {
	var pid int
	switch c := c.(type) {
	case *sersyncdC:
		pid = c.p.pid()
	case *lsyncdC:
		pid = c.p.pid()
	default:
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clkTck
}

// defaultScratch puts the source and the targets in RAM when it can: on a
// small VM the receiving daemons writing tens of thousands of files to disk
// otherwise dominate every contender's time, and the bench is about the
// replication tools, not the disk. -workdir measures on a disk instead.
func defaultScratch() string {
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Type == tmpfsMagic && st.Bavail*uint64(st.Bsize) > 4<<30 {
		return "/dev/shm"
	}
	return os.TempDir()
}

func describeScratch(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return dir
	}
	kind := "disk"
	if st.Type == 0x01021994 {
		kind = "tmpfs, in RAM"
	}
	return fmt.Sprintf("%s (%s)", filepath.Dir(dir), kind)
}
