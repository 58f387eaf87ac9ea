package main

// Fault injection: the daemon killed over and over, the kernel's inotify
// limits, targets that die, hang, refuse or fill up, a queue on a full disk,
// hostile names and hostile trees. Every test ends with every target equal
// to the source, byte for byte.

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// onTmpfs puts the test's temporary directories (source, targets, queue)
// on /dev/shm when it is a writable tmpfs: creating thousands of files on
// the build machine's disk takes seconds that the time budget does not have,
// and the faults tested here do not depend on the file system.
func onTmpfs(t *testing.T) {
	t.Helper()
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != tmpfsMagic || syscall.Access("/dev/shm", 2) != nil {
		return
	}
	t.Setenv("TMPDIR", "/dev/shm")
}

// seededRand logs its seed so a failing run can be replayed with
// SERSYNCD_SEED=<seed>.
func seededRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("SERSYNCD_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("SERSYNCD_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (replay with SERSYNCD_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed))
}

// churn applies random mixed changes to a small name space under root until
// stop is closed: creates, appends, deletes, renames of files and
// directories, mkdir -p and rm -r. Errors are expected (a path may be gone)
// and ignored.
func churn(root string, rng *rand.Rand, stop <-chan struct{}) int {
	dirs := []string{"d0", "d1", "d2", "d3", "d0/s0", "d1/s1", "d2/s0/t0"}
	pick := func() string {
		return filepath.Join(root, dirs[rng.Intn(len(dirs))], fmt.Sprintf("f%d", rng.Intn(8)))
	}
	n := 0
	for {
		select {
		case <-stop:
			return n
		default:
		}
		n++
		switch op := rng.Intn(20); {
		case op < 6: // create or overwrite
			p := pick()
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			_ = os.WriteFile(p, []byte(fmt.Sprintf("v%d %s\n", n, strings.Repeat("x", rng.Intn(3000)))), 0o644)
		case op < 10: // append
			if f, err := os.OpenFile(pick(), os.O_APPEND|os.O_WRONLY, 0); err == nil {
				_, _ = fmt.Fprintf(f, "appended %d\n", n)
				_ = f.Close()
			}
		case op < 13:
			_ = os.Remove(pick())
		case op < 16: // rename a file, maybe over another one
			to := pick()
			_ = os.MkdirAll(filepath.Dir(to), 0o755)
			_ = os.Rename(pick(), to)
		case op < 18: // rename a directory (fails when the target is non-empty)
			a := filepath.Join(root, dirs[rng.Intn(len(dirs))])
			b := filepath.Join(root, dirs[rng.Intn(len(dirs))])
			if !strings.HasPrefix(b+"/", a+"/") && !strings.HasPrefix(a+"/", b+"/") {
				_ = os.Rename(a, b)
			}
		case op < 19:
			_ = os.MkdirAll(filepath.Join(root, dirs[rng.Intn(len(dirs))], "m1/m2"), 0o755)
			_ = os.WriteFile(filepath.Join(root, dirs[rng.Intn(len(dirs))], "m1/m2/f"), []byte("deep"), 0o644)
		default:
			_ = os.RemoveAll(filepath.Join(root, dirs[rng.Intn(len(dirs))]))
		}
	}
}

// TestKill9Repeated kills the daemon at a random moment of a burst of mixed
// changes, 20 times in a row, restarting it each time: the records that
// survived and the full push after every unclean stop must together bring
// the targets to the source.
// soakRounds is n, or SERSYNCD_SOAK_ROUNDS when set: the soak run of the
// fault tests, too long for every CI run (`SERSYNCD_SOAK_ROUNDS=200 go test
// -run Kill9Repeated ./cmd/sersyncd`).
func soakRounds(t *testing.T, n int) int {
	if v := os.Getenv("SERSYNCD_SOAK_ROUNDS"); v != "" {
		soak, err := strconv.Atoi(v)
		if err != nil || soak < 1 {
			t.Fatalf("SERSYNCD_SOAK_ROUNDS=%q: want a positive number", v)
		}
		return soak
	}
	return n
}

func TestKill9Repeated(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	rng := seededRand(t)
	e := newEnv(t, envOptions{targets: 2})
	orphans := 0
	for round := 0; round < soakRounds(t, 20); round++ {
		p := e.start()
		stop := make(chan struct{})
		done := make(chan int)
		burst := time.Duration(100+rng.Intn(100)) * time.Millisecond
		go func(seed int64) { done <- churn(e.src, rand.New(rand.NewSource(seed)), stop) }(rng.Int63())
		killAt := time.Duration(rng.Int63n(int64(burst)))
		time.Sleep(killAt)
		must(t, p.Signal(syscall.SIGKILL))
		if _, err := p.Wait(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		orphans += len(rsyncsOf(e.src))
		// The burst goes on a little after the kill: those changes are seen
		// by nobody but the next start's full push.
		time.Sleep(burst / 4)
		close(stop)
		ops := <-done
		if round > 0 && !strings.Contains(p.Output(), "did not stop cleanly") {
			t.Fatalf("round %d: the unclean stop was not detected:\n%s", round, p.Output())
		}
		t.Logf("round %d: %d changes in %s, killed after %s", round, ops, burst+burst/4, killAt)
	}
	t.Logf("rsync processes that outlived a killed sersyncd: %d", orphans)
	e.start()
	e.converge(30*time.Second, "after 20 kill -9 and restarts")
}

// rsyncsOf returns the pids of the rsync processes pushing from src.
func rsyncsOf(src string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		var pid int
		if _, err := fmt.Sscan(ent.Name(), &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "rsync" && strings.Contains(string(cmdline), "\x00"+src+"/\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// setSysctl writes value to a /proc/sys file and restores the old value in
// t.Cleanup; it skips the test when the file is not writable (no root, or a
// container without a private sysctl).
func setSysctl(t *testing.T, path string, value int) (restore func()) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("cannot read %s: %v", path, err)
	}
	if err := os.WriteFile(path, []byte(fmt.Sprint(value)), 0o644); err != nil {
		t.Skipf("cannot lower %s for this test (needs root and a writable /proc/sys): %v", path, err)
	}
	done := false
	restore = func() {
		if !done {
			done = true
			if err := os.WriteFile(path, old, 0o644); err != nil {
				t.Errorf("restore %s to %s: %v", path, strings.TrimSpace(string(old)), err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}

// TestInotifyOverflow starts the daemon with a kernel event queue of 64
// (the limit is read when the inotify instance is made, so it is restored
// at once and other processes keep theirs) and floods the tree: the
// overflow is logged, the whole tree pushed, the target converges.
func TestInotifyOverflow(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1})
	restore := setSysctl(t, "/proc/sys/fs/inotify/max_queued_events", 64)
	p := e.start()
	restore()
	start := time.Now()
	for i := 0; i < 40; i++ {
		must(t, os.MkdirAll(e.path(fmt.Sprintf("flood/d%02d", i)), 0o755))
		for j := 0; j < 100; j++ {
			e.write(fmt.Sprintf("flood/d%02d/f%03d", i, j), fmt.Sprint(i, j))
		}
	}
	flood := time.Since(start)
	e.converge(30*time.Second, "after the overflow")
	out := p.Output()
	n := strings.Count(out, "overflowed")
	if n == 0 {
		t.Fatalf("no overflow logged: the flood did not overflow a queue of 64, or it went unnoticed:\n%s", tail(out, 4000))
	}
	t.Logf("flood of 4000 files took %s, converged %s later; %d overflow lines, %d full pushes", flood, time.Since(start)-flood, n, strings.Count(out, "full push started"))
	if n > 3 {
		t.Errorf("%d overflow lines for one storm: rate-limit them", n)
	}
}

// TestWatchLimitAtStart starts the daemon with room for 5 more watches
// than are in use, for a tree of 31 directories. It must start anyway, say
// which sysctl to raise and by how much, and keep the tree in sync by full
// pushes (here the crontab's, every 2 s; the watcher's own periodic push
// is at DegradedFullSyncEvery, see internal/watch) instead of silently
// missing the changes in the unwatched directories.
func TestWatchLimitAtStart(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, crontabEvery: "2s"})
	for i := 0; i < 30; i++ {
		must(t, os.Mkdir(e.path(fmt.Sprintf("d%02d", i)), 0o755))
	}
	restore := setSysctl(t, "/proc/sys/fs/inotify/max_user_watches", testutil.InotifyWatchesInUse()+5)
	p := e.start()
	restore()
	out := p.Output()
	if !strings.Contains(out, "sysctl -w fs.inotify.max_user_watches=") || !strings.Contains(out, "raise it by at least") {
		t.Fatalf("the start does not say which sysctl to raise and by how much:\n%s", out)
	}
	if st := e.status(); st.Degraded == "" {
		// The watcher may have caught up already if watches were freed.
		t.Logf("status shows no degraded mode (watches freed meanwhile?): %+v", st)
	} else if _, text := e.tool("status"); !strings.Contains(text, "DEGRADED") {
		t.Fatalf("status does not show the degraded mode:\n%s", text)
	}
	// Changes in the last directories, which have no watch.
	e.write("d29/f", "in an unwatched directory")
	e.write("d00/f", "in a watched directory")
	e.converge(10*time.Second, "degraded mode")
	if code, err := p.Wait(0); err == nil {
		t.Fatalf("sersyncd exited with %d:\n%s", code, p.Output())
	}
}

// waitLog waits until the daemon's output contains one of subs and returns
// the one found.
func waitLog(t *testing.T, e *env, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := e.proc.Output()
		for _, s := range subs {
			if strings.Contains(out, s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("none of %q logged within %s:\n%s", subs, timeout, tail(out, 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	rng.Read(b)
	return b
}

// TestTargetKilledDuringBigPush kills the rsync daemon while 2,000 files of
// 64 KiB are being pushed to it: the failure is logged, the records stay,
// and once the daemon is back the target converges.
func TestTargetKilledDuringBigPush(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	rng := seededRand(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "500ms"})
	d := e.targets[0]
	e.start()
	for i := 0; i < 2000; i++ {
		if i%100 == 0 {
			must(t, os.Mkdir(e.path(fmt.Sprintf("big%02d", i/100)), 0o755))
		}
		must(t, os.WriteFile(e.path(fmt.Sprintf("big%02d/f%04d", i/100, i)), randomBytes(rng, 64<<10), 0o644))
	}
	// Kill it once some, not all, files arrived.
	deadline := time.Now().Add(20 * time.Second)
	arrived := 0
	for {
		arrived = countFiles(d.Dir)
		if arrived >= 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Stop()
	t.Logf("target killed with %d of 2000 files arrived", arrived)
	if arrived >= 2000 {
		t.Fatal("the push was over before the target could be killed: the test proves nothing")
	}
	waitLog(t, e, 20*time.Second, "push failed")
	d.Start()
	// Every file arrives, and the full push after the recovery removes the
	// temporary files of the transfers the kill cut off.
	left := waitDiff(e, d, 30*time.Second, onlyRsyncTempFiles)
	if len(left) > 0 {
		t.Fatalf("rsync temporary files of the cut-off pushes stay on the target: %q", left)
	}
}

var rsyncTemp = regexp.MustCompile(`^\.[^/]+\.[A-Za-z0-9]{6}$`)

// onlyRsyncTempFiles accepts a diff made only of files that exist on the
// target alone and are named as rsync names its temporary files.
func onlyRsyncTempFiles(diff []string) bool {
	for _, line := range diff {
		i := strings.Index(line, `": only in dst (file)`)
		if !strings.HasPrefix(line, `"`) || i < 0 {
			return false
		}
		rel, err := strconv.Unquote(line[:i+1])
		if err != nil || !rsyncTemp.MatchString(filepath.Base(rel)) {
			return false
		}
	}
	return true
}

// waitDiff waits until the target equals the source, or differs only as
// accept allows and has stayed so for 2 s, and returns what differs; it
// fails the test otherwise.
func waitDiff(e *env, d *testutil.Daemon, timeout time.Duration, accept func([]string) bool) []string {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var diff []string
	var since time.Time
	for {
		prev := strings.Join(diff, "\n")
		diff = e.relevant(testutil.DiffTrees(e.src, d.Dir))
		switch {
		case len(diff) == 0 || time.Now().After(deadline):
		case !accept(diff) || strings.Join(diff, "\n") != prev:
			since = time.Time{}
			time.Sleep(50 * time.Millisecond)
			continue
		case since.IsZero():
			since = time.Now()
			continue
		case time.Since(since) < 2*time.Second:
			time.Sleep(50 * time.Millisecond)
			continue
		}
		break
	}
	if len(diff) > 0 && !accept(diff) {
		e.t.Fatalf("target %s differs from the source:\n%s\n--- sersyncd output:\n%s", d.Module, strings.Join(diff, "\n"), tail(e.proc.Output(), 4000))
	}
	return diff
}

func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestTargetHangs replaces the target by a listener that accepts and never
// answers: rsync's --timeout (2 s here) ends the push, the failure is
// logged with rsync's timeout or socket exit code, and a real daemon on the
// same address and port later gets everything.
func TestTargetHangs(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, timeout: 2, backoffMax: "500ms"})
	d := e.targets[0]
	d.Stop()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", d.Port))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	release := func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		held = nil
		mu.Unlock()
	}
	t.Cleanup(release)
	start := time.Now()
	e.start()
	must(t, os.MkdirAll(e.path("a/b"), 0o755))
	e.write("a/b/f", "pushed to a silent target")
	code := waitLog(t, e, 15*time.Second, "rsync exit 30", "rsync exit 35", "rsync exit 10")
	t.Logf("%q after %s", code, time.Since(start).Round(time.Millisecond))
	release()
	d.Start()
	e.write("later", "written while the daemon is back")
	e.converge(20*time.Second, "after a real daemon took the port")
}

// TestTargetReadOnly: a module that is read only fails the push with an
// error that says so; once it is writable, the target converges.
func TestTargetReadOnly(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "500ms"})
	d := e.targets[0]
	d.Stop()
	ro := testutil.StartDaemon(t, testutil.DaemonOptions{Module: d.Module, Dir: d.Dir, Address: "127.0.0.1", Port: d.Port, ReadOnly: true})
	e.start()
	e.write("f", "for a read-only module")
	must(t, os.MkdirAll(e.path("dir/sub"), 0o755))
	e.write("dir/sub/g", "deeper")
	waitLog(t, e, 15*time.Second, "push failed")
	// The reason must reach the log (and the records, the failLog, status).
	time.Sleep(200 * time.Millisecond)
	said := strings.Contains(e.proc.Output(), "read only")
	ro.Stop()
	d.Start()
	e.converge(20*time.Second, "after the module became writable")
	if !said {
		t.Fatalf("the failure does not say the module is read only:\n%s", tail(e.proc.Output(), 1500))
	}
}

// TestTargetDiskFull: the module is a 2 MiB tmpfs, mostly taken by a
// filler; the push of more than fits fails, the error is logged and the
// records kept; once the filler is deleted the target converges.
func TestTargetDiskFull(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	rng := seededRand(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "500ms"})
	d := e.targets[0]
	mountTmpfs(t, d.Dir, "2m")
	filler := filepath.Join(d.Dir, "filler")
	must(t, os.WriteFile(filler, make([]byte, 1536<<10), 0o644))
	e.start()
	for i := 0; i < 10; i++ {
		must(t, os.WriteFile(e.path(fmt.Sprintf("f%d", i)), randomBytes(rng, 100<<10), 0o644))
	}
	waitLog(t, e, 15*time.Second, "No space left on device")
	if diff := testutil.DiffTrees(e.src, d.Dir); len(diff) == 0 {
		t.Fatal("everything fitted: the test proves nothing")
	}
	must(t, os.Remove(filler))
	e.converge(20*time.Second, "after space was freed")
}

// mountTmpfs mounts a tmpfs of size on dir (lazily unmounted in t.Cleanup)
// or skips the test.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs on %s (needs root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// hostileNames returns names that cover every byte from 1 to 255 but '/',
// look like rsync options or shell code (which would create a file named
// marker+something in /tmp if run), play with dots, or are as long as a
// name may be.
func hostileNames(marker string) []string {
	var names []string
	var cur []byte
	for b := 1; b <= 255; b++ {
		if b == '/' {
			continue
		}
		cur = append(cur, byte(b))
		if len(cur) == 16 {
			names = append(names, string(cur))
			cur = nil
		}
	}
	if len(cur) > 0 {
		names = append(names, string(cur))
	}
	// '/' cannot be in a name: the shell forms build it with printf.
	tmp := `$(printf '\057tmp\057')`
	names = append(names,
		"--delete", "-e sh", "--rsh=x", "-", "--", "-rf", "--files-from=x", "--remove-source-files",
		"$(touch "+tmp+marker+"-dollar)",
		"`touch "+tmp+marker+"-backtick`",
		"; touch "+tmp+marker+"-semicolon",
		"| touch "+tmp+marker+"-pipe",
		"& touch "+tmp+marker+"-amp &",
		"x\ntouch "+tmp+marker+"-newline",
		"'$(touch "+tmp+marker+"-quoted)'",
		"#comment", ";semicolon-first", "*", "?", "[a-z]", "~", "~root", "{a,b}", "\\",
		"..a", "a..", "...", ".. ", " ..", "..\n", ".a", ".", // "." is the directory itself: its write fails and is skipped
		strings.Repeat("n", 255),
		strings.Repeat("é", 127)+"x", // 255 bytes of UTF-8
		"\xff\xfe\xfd",
	)
	var out []string
	for _, n := range names {
		if n != "." {
			out = append(out, n)
		}
	}
	return out
}

// replicationSuite runs every kind of change, hostile names included, and
// checks the targets after each group; nothing named may run, and nothing
// may land outside the targets' directories.
func replicationSuite(t *testing.T, e *env) {
	t.Helper()
	marker := fmt.Sprintf("pwned-%d", time.Now().UnixNano())
	parents := map[string][]string{}
	for _, d := range e.targets {
		parents[filepath.Dir(d.Dir)] = dirNames(t, filepath.Dir(d.Dir))
	}
	long := strings.Repeat("L", 200)
	var deep []string
	for i := 0; i < 19; i++ {
		deep = append(deep, fmt.Sprintf("%02d%s", i, long[2:]))
	}
	deepDir := strings.Join(deep, "/")
	deepFile := deepDir + "/" + strings.Repeat("F", 4000-len(deepDir)-1)
	if len(deepFile) != 4000 {
		t.Fatalf("deep path is %d bytes", len(deepFile))
	}
	appendTo := func(rel, s string) {
		f, err := os.OpenFile(e.path(rel), os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteString(s)
		must(t, err)
		must(t, f.Close())
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"create", func() { e.write("a.txt", "hello\n") }},
		{"append", func() { appendTo("a.txt", "more\n") }},
		{"delete", func() { must(t, os.Remove(e.path("a.txt"))) }},
		{"mkdir -p with files", func() {
			must(t, os.MkdirAll(e.path("d1/d2/d3"), 0o755))
			e.write("d1/d2/d3/f", "deep")
			e.write("d1/top", "top")
		}},
		{"rename file", func() { must(t, os.Rename(e.path("d1/top"), e.path("d1/top2"))) }},
		{"rename directory", func() { must(t, os.Rename(e.path("d1"), e.path("moved"))) }},
		{"hostile names", func() {
			must(t, os.Mkdir(e.path("h"), 0o755))
			for _, n := range hostileNames(marker) {
				e.write("h/"+n, "name: "+n)
			}
			// The same names as directories, with a file inside.
			for _, n := range hostileNames(marker) {
				must(t, os.MkdirAll(e.path("hd/"+n), 0o755))
				e.write("hd/"+n+"/inner", n)
			}
		}},
		{"hostile names renamed and deleted", func() {
			for i, n := range hostileNames(marker) {
				if i%2 == 0 {
					must(t, os.Rename(e.path("h/"+n), e.path("h/"+n[:min(len(n), 200)]+".renamed")))
				} else {
					must(t, os.RemoveAll(e.path("hd/"+n)))
				}
			}
		}},
		{"4000-byte path", func() {
			must(t, os.MkdirAll(e.path(deepDir), 0o755))
			e.write(deepFile, "at the end of a 4000-byte path")
		}},
		{"directory replaced by a file", func() {
			must(t, os.MkdirAll(e.path("swap/sub"), 0o755))
			e.write("swap/sub/f", "in a directory")
			e.converge(10*time.Second, "directory before the swap")
			must(t, os.RemoveAll(e.path("swap")))
			e.write("swap", "now a file")
		}},
		{"file replaced by a directory", func() {
			must(t, os.Remove(e.path("swap")))
			must(t, os.MkdirAll(e.path("swap/sub"), 0o755))
			e.write("swap/sub/f", "a directory again")
		}},
		{"delete everything", func() {
			entries, err := os.ReadDir(e.src)
			must(t, err)
			for _, ent := range entries {
				must(t, os.RemoveAll(e.path(ent.Name())))
			}
		}},
	}
	for _, s := range steps {
		start := time.Now()
		s.do()
		e.converge(15*time.Second, s.name)
		t.Logf("%s: converged in %s", s.name, time.Since(start).Round(time.Millisecond))
	}
	if ran, _ := filepath.Glob("/tmp/" + marker + "*"); len(ran) > 0 {
		t.Fatalf("file names were run as shell code: %q exist", ran)
	}
	wd, _ := os.Getwd()
	for _, dir := range []string{wd, os.Getenv("HOME"), e.dir} {
		if ran, _ := filepath.Glob(filepath.Join(dir, "*"+marker+"*")); len(ran) > 0 {
			t.Fatalf("file names were run as shell code: %q exist", ran)
		}
	}
	for parent, before := range parents {
		if after := dirNames(t, parent); strings.Join(after, "\n") != strings.Join(before, "\n") {
			t.Fatalf("something landed beside the target in %s:\nbefore %q\nafter  %q", parent, before, after)
		}
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, ent := range entries {
		names = append(names, ent.Name())
	}
	return names
}

func TestHostileNamesToDaemons(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 2})
	e.start()
	replicationSuite(t, e)
}

func TestReplicationOverSSH(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	sshd := testutil.StartSSHD(t)
	e := newEnv(t, envOptions{ssh: sshd})
	e.start()
	replicationSuite(t, e)
}

// fillDisk writes a filler file in dir until the file system is full.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	must(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Small writes take the last partial blocks too.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

// TestQueueDiskFull puts the queue on a 4 MiB tmpfs and fills it: the
// daemon logs the write error, keeps running and holds the changes; once
// space returns it commits them, the target converges, and bbolt finds
// the queue file intact.
func TestQueueDiskFull(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "500ms"})
	dbDir := filepath.Join(e.dir, "dbfs")
	must(t, os.Mkdir(dbDir, 0o755))
	mountTmpfs(t, dbDir, "4m")
	e.db = filepath.Join(dbDir, "queue.db")
	p := e.start()
	e.write("before", "before the disk filled up")
	// The directories before: a new directory's files are one record.
	for d := 0; d < 20; d++ {
		must(t, os.Mkdir(e.path(fmt.Sprintf("d%02d", d)), 0o755))
	}
	e.converge(10*time.Second, "before the disk filled up")
	filler := fillDisk(t, dbDir)
	// Enough records that the queue file has to grow.
	long := strings.Repeat("n", 100)
	for i := 0; i < 2000; i++ {
		e.write(fmt.Sprintf("d%02d/%s%04d", i/100, long, i), fmt.Sprint(i))
	}
	waitLog(t, e, 15*time.Second, "no space left on device")
	time.Sleep(3 * time.Second)
	if _, err := p.Wait(0); err == nil {
		t.Fatalf("sersyncd exited on a full queue disk:\n%s", tail(p.Output(), 4000))
	}
	must(t, os.Remove(filler))
	e.write("after", "after space came back")
	e.converge(30*time.Second, "after space came back")
	for _, line := range strings.Split(p.Output(), "\n") {
		if strings.Contains(line, "queue") && !strings.Contains(line, "sersyncd started") {
			t.Log(line)
		}
	}
	must(t, p.Signal(syscall.SIGTERM))
	code, err := p.Wait(20 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v:\n%s", code, err, tail(p.Output(), 4000))
	}
	db, err := bolt.Open(e.db, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	must(t, err)
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []string
		for err := range tx.Check() {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("queue file corrupt after the disk was full: %v", err)
	}
}

// cpuTicks returns the user+system CPU time of pid in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var utime, stime int
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return utime + stime
}

// TestRootRemoved: the watched directory itself is removed while the
// daemon runs. It must not spin, and it stops with exit code 1 and a
// message that names the directory (a new directory of that name would
// not be watched, and pushing an empty or missing root is no backup);
// the next start refuses the missing directory as a config error. The
// removal leaves the mark of missed changes in the queue: once the root is
// recreated, with other files, a start without -r pushes all of it (before,
// only the deletions queued before the exit were pushed, and the files of
// the recreated tree never arrived).
func TestRootRemoved(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, backoffMax: "500ms"})
	must(t, os.MkdirAll(e.path("a/b"), 0o755))
	e.write("a/b/f", "x")
	p := e.start("-r")
	e.converge(10*time.Second, "before the removal")
	before := cpuTicks(t, p.PID())
	must(t, os.RemoveAll(e.src))
	code, err := p.Wait(15 * time.Second)
	if err != nil {
		ticks := cpuTicks(t, p.PID()) - before
		t.Fatalf("still running 15 s after its root was removed (%d CPU ticks meanwhile):\n%s", ticks, tail(p.Output(), 3000))
	}
	cpu := p.Cmd.ProcessState.UserTime() + p.Cmd.ProcessState.SystemTime()
	out := p.Output()
	t.Logf("exit %d, %s of CPU in all", code, cpu)
	if code != 1 || !strings.Contains(out, "watched directory was removed or renamed: "+e.src) || !strings.Contains(out, "a full push will run at start") {
		t.Fatalf("exit %d; want 1 and a message naming %s:\n%s", code, e.src, tail(out, 3000))
	}
	if cpu > 2*time.Second {
		t.Errorf("%s of CPU: a busy loop?", cpu)
	}
	// The backup is untouched: nothing pushed the missing root over it.
	if _, err := os.Stat(filepath.Join(e.targets[0].Dir, "a/b/f")); err != nil {
		t.Errorf("the target lost its files: %v", err)
	}
	again := testutil.StartProcess(t, e.bin, "-o", e.config, "--db", e.db)
	code, err = again.Wait(10 * time.Second)
	if err != nil || code != 2 || !strings.Contains(again.Output(), "does not exist") {
		t.Fatalf("start without the root: exit %d, %v:\n%s", code, err, again.Output())
	}
	// Restored from elsewhere, as an operator would: other files, one of
	// the old ones with other content, none of it ever seen by a watch.
	must(t, os.MkdirAll(e.path("a/b"), 0o755))
	e.write("a/b/f", "restored, other content")
	must(t, os.MkdirAll(e.path("new/deep"), 0o755))
	for i := 0; i < 50; i++ {
		e.write(fmt.Sprintf("new/deep/f%02d", i), strings.Repeat("r", i))
	}
	if code, text := e.tool("status"); code != 0 || !strings.Contains(text, "owed:    a full push of every target, since changes may have been missed: the watched directory was removed") {
		t.Fatalf("status after the removal: exit %d:\n%s", code, text)
	}
	p = e.start() // without -r
	e.converge(15*time.Second, "after the root was recreated")
	if !strings.Contains(p.Output(), "changes may have been missed: the watched directory was removed") {
		t.Errorf("the start does not say why it pushes the whole tree:\n%s", tail(p.Output(), 3000))
	}
}

// TestSymlinkLoopsAndSpecialFiles: links that loop (a -> b -> a), a link
// to its own directory's parent and to itself are pushed as links, by live
// events and by a full push, without hanging; a FIFO is pushed as a FIFO
// (-a includes -D).
func TestSymlinkLoopsAndSpecialFiles(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1})
	p := e.start()
	must(t, os.MkdirAll(e.path("dir/sub"), 0o755))
	e.write("dir/sub/f", "x")
	must(t, os.Symlink("b", e.path("a")))
	must(t, os.Symlink("a", e.path("b")))
	must(t, os.Symlink("..", e.path("dir/sub/up")))
	must(t, os.Symlink(".", e.path("dir/self")))
	must(t, os.Symlink(e.src, e.path("dir/root")))
	must(t, os.Symlink("loop", e.path("loop")))
	must(t, syscall.Mkfifo(e.path("dir/fifo"), 0o644))
	e.converge(10*time.Second, "live events")
	// A change below a link to a directory: recorded under its real path.
	e.write("dir/sub/g", "through the real path")
	e.converge(10*time.Second, "after a change below the looped directory")
	must(t, p.Signal(syscall.SIGTERM))
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The full push walks the same tree.
	must(t, os.RemoveAll(e.targets[0].Dir+"/dir"))
	e.start("-r")
	e.converge(10*time.Second, "full push")
}

// TestHundredThousandEntries: a directory of 100,000 files, made outside
// and moved into the tree, is scanned and pushed within a bound.
func TestHundredThousandEntries(t *testing.T) {
	testutil.Integration(t)
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1})
	stage := filepath.Join(e.dir, "stage")
	must(t, os.MkdirAll(filepath.Join(stage, "big"), 0o755))
	start := time.Now()
	for i := 0; i < 100000; i++ {
		must(t, os.WriteFile(filepath.Join(stage, "big", fmt.Sprintf("f%06d", i)), []byte(strconv.Itoa(i)), 0o644))
	}
	t.Logf("made 100,000 files in %s", time.Since(start).Round(time.Millisecond))
	e.start()
	start = time.Now()
	must(t, os.Rename(filepath.Join(stage, "big"), e.path("big")))
	// DiffTrees takes seconds for 100,000 entries: poll with a cheap
	// count, compare the big directory in parallel, the rest with converge.
	target := filepath.Join(e.targets[0].Dir, "big")
	for {
		names, _ := os.ReadDir(target)
		if len(names) >= 100000 || time.Since(start) > 60*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		diff := sameFlatDir(e.path("big"), target)
		if len(diff) == 0 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the big directory differs: %q", diff)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("all arrived and compared in %s", time.Since(start).Round(time.Millisecond))
	// The tree is the big directory alone.
	if a, b := dirNames(t, e.src), dirNames(t, e.targets[0].Dir); strings.Join(a, "/") != "big" || strings.Join(b, "/") != "big" {
		t.Fatalf("source root %q, target root %q", a, b)
	}
}

// sameFlatDir compares two directories of regular files, byte for byte,
// with a few goroutines; it returns up to 10 differences.
func sameFlatDir(a, b string) []string {
	an, err := os.ReadDir(a)
	if err != nil {
		return []string{err.Error()}
	}
	bn, err := os.ReadDir(b)
	if err != nil {
		return []string{err.Error()}
	}
	if len(an) != len(bn) {
		return []string{fmt.Sprintf("%d entries in %s, %d in %s", len(an), a, len(bn), b)}
	}
	var mu sync.Mutex
	var diff []string
	var wg sync.WaitGroup
	const workers = 4
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(an); i += workers {
				name := an[i].Name()
				x, err1 := os.ReadFile(filepath.Join(a, name))
				y, err2 := os.ReadFile(filepath.Join(b, name))
				if err1 != nil || err2 != nil || !bytes.Equal(x, y) || bn[i].Name() != name {
					mu.Lock()
					if len(diff) < 10 {
						diff = append(diff, fmt.Sprintf("%q: %v %v", name, err1, err2))
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return diff

}
