package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil/plain"
)

// clkTck is USER_HZ; Linux reports it as 100 on every architecture Go runs on.
const clkTck = 100

// proc is a child started in its own process group. Every proc is
// registered so that killAll can end it (and whatever it spawned, even in
// other process groups) on any exit path.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *plain.Buffer
	done chan struct{}
}

var registry struct {
	mu    sync.Mutex
	procs map[*proc]bool
}

// startProc starts name in a new process group with output captured.
func startProc(name string, args []string, env []string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(name, args...), out: &plain.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %v", name, err)
	}
	if registry.procs == nil {
		registry.procs = map[*proc]bool{}
	}
	registry.procs[p] = true
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitOutput reports whether substr appears count times in the output
// within timeout.
func (p *proc) waitOutput(substr string, count int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Count(p.out.String(), substr) >= count {
			return true
		}
		if time.Now().After(deadline) || p.exited() {
			return strings.Count(p.out.String(), substr) >= count
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits up to grace, then kills the group and every
// remaining descendant (sersyncd puts its rsyncs in groups of their own).
func (p *proc) stop(grace time.Duration) {
	if !p.exited() {
		desc := descendants(p.pid())
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		for _, d := range desc {
			_ = syscall.Kill(d, syscall.SIGKILL)
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	}
	registry.mu.Lock()
	delete(registry.procs, p)
	registry.mu.Unlock()
	if dir := os.Getenv("BENCH_KEEP_OUTPUT"); dir != "" {
		// For looking into one cell: what the process printed survives the
		// scratch directory.
		name := filepath.Join(dir, fmt.Sprintf("%s-%d.log", filepath.Base(p.name), p.pid()))
		_ = os.WriteFile(name, []byte(p.out.String()), 0o644)
	}
}

// killAll ends every registered process at once; used on exit and signals.
func killAll() {
	registry.mu.Lock()
	var ps []*proc
	for p := range registry.procs {
		ps = append(ps, p)
	}
	registry.mu.Unlock()
	for _, p := range ps {
		p.stop(0)
	}
}

type statInfo struct {
	ppid, pgrp int
	ticks      int64 // utime+stime+cutime+cstime
	comm       string
}

func readStat(pid int) (statInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return statInfo{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < 0 {
		return statInfo{}, false
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); utime is field 14 -> f[11].
	if len(f) < 15 {
		return statInfo{}, false
	}
	var st statInfo
	st.comm = s[open+1 : end]
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgrp, _ = strconv.Atoi(f[2])
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		st.ticks += v
	}
	return st, true
}

func allStats() map[int]statInfo {
	ents, _ := os.ReadDir("/proc")
	m := make(map[int]statInfo, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			m[pid] = st
		}
	}
	return m
}

func descendantsOf(root int, m map[int]statInfo) []int {
	children := map[int][]int{}
	for pid, st := range m {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 && len(out) < 100000 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func descendants(root int) []int { return descendantsOf(root, allStats()) }

// treeCPU is the CPU time, in seconds, of root and all its live
// descendants, including the children they have already reaped (cutime,
// cstime): a child's time moves into its parent's c-fields when reaped, so
// nothing is counted twice.
func treeCPU(root int) float64 {
	m := allStats()
	st, ok := m[root]
	if !ok {
		return 0
	}
	ticks := st.ticks
	for _, d := range descendantsOf(root, m) {
		ticks += m[d].ticks
	}
	return float64(ticks) / clkTck
}

// statusKiB reads a "VmHWM:"-style field of /proc/pid/status in KiB.
func statusKiB(pid int, field string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}

// hwmByComm sums VmHWM of root's descendants (and root) named comm.
func hwmByComm(root int, comm string) int64 {
	m := allStats()
	var sum int64
	for _, d := range append([]int{root}, descendantsOf(root, m)...) {
		if m[d].comm == comm {
			sum += statusKiB(d, "VmHWM")
		}
	}
	return sum
}

// run executes a command to completion and returns its combined output.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
