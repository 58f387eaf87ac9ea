package main

// Fault injection: the daemon killed over and over, the kernel's inotify
// limits, targets that die, hang, refuse or fill up, a queue on a full disk,
// hostile names and hostile trees. Every test ends with every target equal
// to the source, byte for byte.

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
func TestKill9Repeated(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	onTmpfs(t)
	rng := seededRand(t)
	e := newEnv(t, envOptions{targets: 2})
	orphans := 0
	for round := 0; round < 20; round++ {
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
	if testing.Short() {
		t.Skip("integration test")
	}
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

// inotifyWatchesInUse counts the inotify watches of every process (an
// instance shared by several processes counts more than once).
func inotifyWatchesInUse() int {
	n := 0
	fds, _ := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	for _, f := range fds {
		if b, err := os.ReadFile(f); err == nil {
			n += strings.Count(string(b), "inotify wd:")
		}
	}
	return n
}

// TestWatchLimitAtStart starts the daemon with room for 5 more watches
// than are in use, for a tree of 31 directories. It must start anyway, say
// which sysctl to raise and by how much, and keep the tree in sync by full
// pushes (here the crontab's, every 2 s; the watcher's own periodic push
// is at DegradedFullSyncEvery, see internal/watch) instead of silently
// missing the changes in the unwatched directories.
func TestWatchLimitAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	onTmpfs(t)
	e := newEnv(t, envOptions{targets: 1, crontabEvery: "2s"})
	for i := 0; i < 30; i++ {
		must(t, os.Mkdir(e.path(fmt.Sprintf("d%02d", i)), 0o755))
	}
	restore := setSysctl(t, "/proc/sys/fs/inotify/max_user_watches", inotifyWatchesInUse()+5)
	p := e.start()
	restore()
	out := p.Output()
	if !strings.Contains(out, "sysctl -w fs.inotify.max_user_watches=") || !strings.Contains(out, "raise it by at least") {
		t.Fatalf("the start does not say which sysctl to raise and by how much:\n%s", out)
	}
	// Changes in the last directories, which have no watch.
	e.write("d29/f", "in an unwatched directory")
	e.write("d00/f", "in a watched directory")
	e.converge(10*time.Second, "degraded mode")
	if code, err := p.Wait(0); err == nil {
		t.Fatalf("sersyncd exited with %d:\n%s", code, p.Output())
	}
}
