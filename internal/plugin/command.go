package plugin

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
)

// commandWorkers is how many commands run at once.
const defaultCommandWorkers = 4

// commandTimeout bounds one run; the command (its whole process group) is
// killed after it.
const defaultCommandTimeout = 60 * time.Second

// commandOutputMax is how much of a failed command's output is logged (its end).
const commandOutputMax = 2048

// shells get the changed path as $1, never inside their -c string.
var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true}

// dollar0 is the $0 given to a shell's -c string.
const dollar0 = "sersyncd"

type commandRunner struct {
	log         logrus.FieldLogger
	timeout     time.Duration // tuning.commandTimeout: a run is killed after it
	root        string
	prefix      []string // argv before the path, "sersyncd" ($0) appended when needed
	suffix      []string
	include     []*regexp.Regexp // whole-path matches; nil: every path
	ignoreError bool

	ctx    context.Context // cancelled by close: kills running commands
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []string // relative paths waiting for a worker; never bounded, never dropped
	closed bool

	failures atomic.Int64
	// onFailure, when set, gets every failure that ignoreError does not
	// excuse: the daemon writes it to the failLog.
	onFailure func(rel string, err error)
}

// commandWords splits prefix and suffix and says whether a shell's $0 must
// be added after the prefix.
func commandWords(cp *config.CommandPlugin) (prefix, suffix []string, err error) {
	prefix, err = splitWords(cp.Prefix)
	if err != nil {
		return nil, nil, fmt.Errorf(`<plugin name="command"><param prefix=%q>: %v`, cp.Prefix, err)
	}
	if len(prefix) == 0 {
		return nil, nil, fmt.Errorf(`<plugin name="command"><param prefix>: is empty: name the program to run, e.g. prefix="/usr/local/bin/on-change"`)
	}
	suffix, err = splitWords(cp.Suffix)
	if err != nil {
		return nil, nil, fmt.Errorf(`<plugin name="command"><param suffix=%q>: %v`, cp.Suffix, err)
	}
	if needsDollar0(prefix) {
		prefix = append(prefix, dollar0)
	}
	return prefix, suffix, nil
}

// needsDollar0: with `sh -c 'script'`, the next word is $0, so the path must
// come one word later to be $1. A prefix that already names $0
// (`sh -c 'script' name`) gets nothing added.
func needsDollar0(prefix []string) bool {
	if !shells[filepath.Base(prefix[0])] {
		return false
	}
	for i, w := range prefix[1:] {
		if isDashC(w) {
			// prefix[i+1] is -c, prefix[i+2] the script, prefix[i+3] $0.
			return len(prefix) <= i+3
		}
	}
	return false
}

// isDashC matches -c and option clusters holding c (-ec, -lc, -xec).
func isDashC(w string) bool {
	if len(w) < 2 || w[0] != '-' || w[1] == '-' || !strings.ContainsRune(w, 'c') {
		return false
	}
	for _, ch := range w[1:] {
		if ch < 'a' || ch > 'z' {
			return false
		}
	}
	return true
}

func newCommandRunner(cfg *config.Config, log logrus.FieldLogger, tune tuning) (*commandRunner, error) {
	cp := cfg.Command
	prefix, suffix, err := commandWords(cp)
	if err != nil {
		return nil, err
	}
	c := &commandRunner{log: log, timeout: tune.commandTimeout, root: cfg.LocalPath, prefix: prefix, suffix: suffix, ignoreError: cp.IgnoreError}
	if cp.FilterEnabled {
		// sersync's CommandInterface::Execute runs the command for a path
		// when an include expression matches the whole absolute path
		// (boost::regex_match on event->path).
		c.include = []*regexp.Regexp{}
		for _, expr := range cp.Includes {
			re, err := filter.Compile(expr)
			if err != nil {
				return nil, fmt.Errorf(`<plugin name="command"><filter><include expression=%q>: %w`, expr, err)
			}
			c.include = append(c.include, re)
		}
		if len(cp.Includes) == 0 {
			log.Warn(`<plugin name="command"><filter start="true"> has no <include expression>: the command never runs`)
		}
	}
	if _, err := exec.LookPath(prefix[0]); err != nil {
		log.WithError(err).Warnf("command %q not found now; every run fails until it exists", prefix[0])
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.cond = sync.NewCond(&c.mu)
	workers := max(tune.commandWorkers, 1)
	c.wg.Add(workers)
	for range workers {
		go c.worker()
	}
	return c, nil
}

func (c *commandRunner) accepts(rel string) bool {
	if c.include == nil {
		return true
	}
	abs := c.root + "/" + rel
	for _, re := range c.include {
		if re.MatchString(abs) {
			return true
		}
	}
	return false
}

func (c *commandRunner) enqueue(rel []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	n := 0
	for _, r := range rel {
		if c.accepts(r) {
			c.queue = append(c.queue, r)
			n++
		}
	}
	if n > 0 {
		c.cond.Broadcast()
	}
}

func (c *commandRunner) worker() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		rel := c.queue[0]
		c.queue[0] = ""
		c.queue = c.queue[1:]
		c.mu.Unlock()
		c.run(rel)
	}
}

// argv is prefix, the absolute path as one word, suffix.
func (c *commandRunner) argv(abs string) []string {
	argv := make([]string, 0, len(c.prefix)+1+len(c.suffix))
	argv = append(argv, c.prefix...)
	argv = append(argv, abs)
	return append(argv, c.suffix...)
}

func (c *commandRunner) run(rel string) {
	abs := absPath(c.root, rel)
	argv := c.argv(abs)
	ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out := &tail{max: commandOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	// A child that keeps the output pipe open must not hold the worker.
	cmd.WaitDelay = time.Second
	killGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	log := c.log.WithFields(logrus.Fields{"path": abs, "duration": time.Since(start).Round(time.Millisecond)})
	if err == nil {
		log.WithField("exit", 0).Debug("command done")
		return
	}
	status := "none"
	var exitErr *exec.ExitError
	switch {
	case c.ctx.Err() != nil:
		log.WithError(err).Warn("command killed: sersyncd is stopping")
		return
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		status = "timeout"
		err = fmt.Errorf("killed after %s: %w", c.timeout, err)
	case errors.As(err, &exitErr):
		status = exitErr.ProcessState.String() // "exit status 3", "signal: killed"
		if code := exitErr.ExitCode(); code >= 0 {
			status = fmt.Sprint(code)
		}
	}
	log = log.WithField("exit", status)
	if o := strings.TrimSpace(out.String()); o != "" {
		log = log.WithField("output", o)
	}
	if c.ignoreError {
		log.WithError(err).Debug("command failed (ignoreError)")
		return
	}
	c.failures.Add(1)
	log.WithError(err).Errorf("command failed: %s", strings.Join(quoteArgs(argv), " "))
	if c.onFailure != nil {
		c.onFailure(rel, fmt.Errorf("command plugin: exit %s: %w", status, err))
	}
}

// close lets the queue drain until deadline, then kills what runs and drops
// what waits.
func (c *commandRunner) close(deadline time.Time) {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		c.cancel()
		return
	case <-timer.C:
	}
	c.mu.Lock()
	left := len(c.queue)
	c.queue = nil
	c.mu.Unlock()
	c.cancel()
	if left > 0 {
		c.log.Warnf("stopping: %d queued command runs dropped", left)
	}
	<-done
}

// tail keeps the last max bytes written.
type tail struct {
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]|&;<>(){}#~") {
			q[i] = fmt.Sprintf("%q", a)
		} else {
			q[i] = a
		}
	}
	return q
}
