package retry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/pusher"
)

// fixedNow is the clock of the failLogs under test; it is deliberately not
// in UTC, so the tests see that the log converts it.
var fixedNow = time.Date(2026, 11, 22, 11, 40, 0, 0, time.FixedZone("CST", 8*3600))

const fixedStamp = "2026-11-22T03:40:00Z"

// writeFailLog opens a failLog in a fresh directory, lets write use it,
// closes it and returns the file's content ("" when no file was created).
func writeFailLog(t *testing.T, write func(f *FailLog)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fail.log")
	log, _ := logtest.NewNullLogger()
	f := OpenFailLog(path, log)
	f.now = func() time.Time { return fixedNow }
	write(f)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// failLine is one failLog line taken apart.
type failLine struct {
	stamp  string
	target string
	exit   string // what follows "exit="
	count  int    // paths=
	reason string
	paths  []string
	more   string // "...and N more", or ""
	tokens []string
}

// parseFailLine reads a line in the documented format, unquoting every
// quoted field with strconv.Unquote; anything left over is an error.
func parseFailLine(line string) (failLine, error) {
	var l failLine
	rest, ok := strings.CutPrefix(line, "# ")
	if !ok {
		return l, fmt.Errorf("does not start with %q", "# ")
	}
	quoted := func(field string) (string, error) {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, field); !ok {
			return "", fmt.Errorf("expected %q at %q", field, rest)
		}
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", fmt.Errorf("%s not a quoted string at %q: %v", field, rest, err)
		}
		rest = rest[len(q):]
		l.tokens = append(l.tokens, q)
		return strconv.Unquote(q)
	}
	var err error
	l.stamp, rest, _ = strings.Cut(rest, " ")
	if l.target, err = quoted("target="); err != nil {
		return l, err
	}
	var exit string
	if exit, rest, ok = strings.Cut(rest, " paths="); !ok {
		return l, fmt.Errorf("no paths= in %q", rest)
	}
	if l.exit, ok = strings.CutPrefix(exit, " exit="); !ok {
		return l, fmt.Errorf("no exit= in %q", exit)
	}
	var n string
	n, rest, _ = strings.Cut(rest, " ")
	if l.count, err = strconv.Atoi(n); err != nil {
		return l, fmt.Errorf("paths=%q: %v", n, err)
	}
	rest = " " + rest
	if l.reason, err = quoted(" reason="); err != nil {
		return l, err
	}
	for rest != "" {
		if strings.HasPrefix(rest, " ...and ") {
			l.more, rest = rest[1:], ""
			break
		}
		p, err := quoted(" ")
		if err != nil {
			return l, err
		}
		l.paths = append(l.paths, p)
	}
	return l, nil
}

// lines splits a log into its lines, failing unless it ends with a newline.
func lines(t *testing.T, log string) []string {
	t.Helper()
	if log == "" {
		return nil
	}
	if !strings.HasSuffix(log, "\n") {
		t.Fatalf("log does not end with a newline: %q", log)
	}
	return strings.Split(strings.TrimSuffix(log, "\n"), "\n")
}

func TestFailLogLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string
		paths  []string
		err    error
		exit   string
		reason string
	}{
		{
			name:   "rsync exit code",
			target: "127.0.0.1::backup",
			paths:  []string{"a b", "c"},
			err:    exitErr(10, "error in socket I/O"),
			exit:   "10 (error in socket I/O)",
			reason: "rsync exit 10 (error in socket I/O)",
		},
		{
			name:   "wrapped exit code",
			target: "t",
			paths:  []string{"x"},
			err:    fmt.Errorf("push: %w", exitErr(23, "partial transfer due to error")),
			exit:   "23 (partial transfer due to error)",
			reason: "push: rsync exit 23 (partial transfer due to error)",
		},
		{
			name:   "unknown exit code",
			target: "t",
			paths:  []string{"x"},
			err:    exitErr(99, "unknown rsync exit code"),
			exit:   "99 (unknown rsync exit code)",
			reason: "rsync exit 99 (unknown rsync exit code)",
		},
		{
			name:   "no exit code",
			target: "host:/dst",
			paths:  []string{"dir/", "dir/f"},
			err:    errors.New("run rsync: context deadline exceeded"),
			exit:   "none",
			reason: "run rsync: context deadline exceeded",
		},
		{
			name:   "no paths",
			target: "t",
			err:    errors.New("boom"),
			exit:   "none",
			reason: "boom",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := writeFailLog(t, func(f *FailLog) { f.Pushed(tc.target, tc.paths, time.Second, tc.err) })
			ls := lines(t, log)
			if len(ls) != 1 {
				t.Fatalf("want 1 line, got %d: %q", len(ls), log)
			}
			l, err := parseFailLine(ls[0])
			if err != nil {
				t.Fatalf("line %q: %v", ls[0], err)
			}
			if l.stamp != fixedStamp {
				t.Errorf("time = %q, want %q (RFC 3339, UTC)", l.stamp, fixedStamp)
			}
			if l.target != tc.target {
				t.Errorf("target = %q, want %q", l.target, tc.target)
			}
			if l.exit != tc.exit {
				t.Errorf("exit = %q, want %q", l.exit, tc.exit)
			}
			if l.count != len(tc.paths) {
				t.Errorf("paths= %d, want %d", l.count, len(tc.paths))
			}
			if l.reason != tc.reason {
				t.Errorf("reason = %q, want %q", l.reason, tc.reason)
			}
			if fmt.Sprint(l.paths) != fmt.Sprint(tc.paths) || len(l.paths) != len(tc.paths) {
				t.Errorf("paths = %q, want %q", l.paths, tc.paths)
			}
			if l.more != "" {
				t.Errorf("unexpected %q", l.more)
			}
		})
	}
}

func TestFailLogIgnoresSuccess(t *testing.T) {
	log := writeFailLog(t, func(f *FailLog) {
		f.Pushed("t", []string{"a"}, time.Second, nil)
		f.Pushed("t", []string{"b"}, time.Second, errors.New("failed"))
		f.Pushed("t", []string{"c"}, time.Second, nil)
	})
	ls := lines(t, log)
	if len(ls) != 1 {
		t.Fatalf("want only the failed push logged, got %q", log)
	}
	if l, err := parseFailLine(ls[0]); err != nil || len(l.paths) != 1 || l.paths[0] != "b" {
		t.Errorf("logged %q (%v), want the push of b", ls[0], err)
	}
}

func TestFailLogCapsPaths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		shown int
		more  string
	}{
		{"under the cap", 2, 2, ""},
		{"at the cap", 3, 3, ""},
		{"over the cap", 5, 3, "...and 2 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var paths []string
			for i := range tc.n {
				paths = append(paths, fmt.Sprintf("p%d", i))
			}
			log := writeFailLog(t, func(f *FailLog) { f.maxPaths = 3; f.Pushed("t", paths, 0, errors.New("x")) })
			ls := lines(t, log)
			if len(ls) != 1 {
				t.Fatalf("want 1 line, got %q", log)
			}
			l, err := parseFailLine(ls[0])
			if err != nil {
				t.Fatalf("line %q: %v", ls[0], err)
			}
			if l.count != tc.n {
				t.Errorf("paths=%d, want the whole batch %d", l.count, tc.n)
			}
			if fmt.Sprint(l.paths) != fmt.Sprint(paths[:tc.shown]) {
				t.Errorf("paths written %q, want %q", l.paths, paths[:tc.shown])
			}
			if l.more != tc.more {
				t.Errorf("tail %q, want %q", l.more, tc.more)
			}
		})
	}
}

// hostile are file names (and so targets and error messages) that would
// run "touch pwned", or break out of the line or the quoting, if the
// failLog were written the way sersync wrote its script.
var hostile = []struct{ name, s string }{
	{"newline", "a\ntouch pwned"},
	{"carriage return", "a\rtouch pwned"},
	{"line separator", "a\u2028touch pwned"},
	{"command substitution", "$(touch pwned)"},
	{"backticks", "`touch pwned`"},
	{"escaped dollar", `\$(touch pwned)`},
	{"escaped backtick", "\\`touch pwned\\`"},
	{"Go escape lookalike", `\x24(touch pwned)`},
	{"variable", "${HOME}$HOME$1$@"},
	{"double quote", `x"; touch pwned; echo "`},
	{"single quote", `x'; touch pwned; echo '`},
	{"semicolon and pipe", "; touch pwned | touch pwned & touch pwned"},
	{"trailing backslash", `dir\`},
	{"backslash newline", "a\\\ntouch pwned"},
	{"invalid UTF-8", "bad\xff\xfe name"},
	{"NUL", "a\x00b"},
	{"leading dash", "-rf --delete"},
	{"glob and tilde", "* ? [a] ~root"},
	{"comment", "# \n touch pwned"},
}

func TestFailLogQuotesHostileNames(t *testing.T) {
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			log := writeFailLog(t, func(f *FailLog) {
				f.Pushed(h.s, []string{h.s, "plain"}, 0, errors.New(h.s))
			})
			ls := lines(t, log)
			if len(ls) != 1 {
				t.Fatalf("want one line, got %d: %q", len(ls), log)
			}
			line := ls[0]
			if !strings.HasPrefix(line, "#") {
				t.Errorf("line does not start with #: %q", line)
			}
			if strings.ContainsAny(line, "$`\r\x00") {
				t.Errorf("line holds a raw $, `, CR or NUL: %q", line)
			}
			l, err := parseFailLine(line)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if l.target != h.s || l.reason != h.s || len(l.paths) != 2 || l.paths[0] != h.s || l.paths[1] != "plain" {
				t.Errorf("did not read back the names: target %q reason %q paths %q", l.target, l.reason, l.paths)
			}
			assertShellInert(t, log, l.tokens)
		})
	}
}

// assertShellInert runs the log with every shell at hand, and each quoted
// token, without the "#" that comments the line out, as an argument of
// printf; nothing must be created, and each token must reach printf as
// one word holding exactly its characters (nothing expanded).
func assertShellInert(t *testing.T, log string, tokens []string) {
	t.Helper()
	shells := []string{"/bin/sh"}
	if bash, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, bash)
	}
	var printf strings.Builder
	for _, tok := range tokens {
		fmt.Fprintf(&printf, "printf '[%%s]\\n' %s\n", tok)
	}
	var want strings.Builder
	for _, tok := range tokens {
		fmt.Fprintf(&want, "[%s]\n", shDoubleQuoted(t, tok))
	}
	for _, sh := range shells {
		for _, s := range []struct{ name, script, want string }{
			{"log", log, ""},
			{"tokens", printf.String(), want.String()},
		} {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "script"), []byte(s.script), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sh, "./script")
			cmd.Dir = dir
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Errorf("%s %s: %v; stderr %q", sh, s.name, err, stderr.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("%s %s: stderr %q", sh, s.name, stderr.String())
			}
			if stdout.String() != s.want {
				t.Errorf("%s %s: output %q, want %q", sh, s.name, stdout.String(), s.want)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "script" {
					t.Errorf("%s %s created %q", sh, s.name, e.Name())
				}
			}
		}
	}
}

// shDoubleQuoted is the word a POSIX shell makes of a double-quoted token
// in which nothing expands: a backslash only escapes $ ` " \ and newline.
func shDoubleQuoted(t *testing.T, tok string) string {
	t.Helper()
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		t.Fatalf("token %q is not double-quoted", tok)
	}
	in := tok[1 : len(tok)-1]
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		if in[i] == '\\' && i+1 < len(in) && strings.IndexByte("$`\"\\\n", in[i+1]) >= 0 {
			i++
		}
		b.WriteByte(in[i])
	}
	return b.String()
}

func TestFailLogConcurrentPushesKeepWholeLines(t *testing.T) {
	const writers, each = 8, 50
	long := strings.Repeat("x", 2000)
	log := writeFailLog(t, func(f *FailLog) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					f.Pushed(fmt.Sprintf("t%d", w), []string{long, fmt.Sprint(i)}, 0, errors.New("x"))
				}
			})
		}
		wg.Wait()
	})
	ls := lines(t, log)
	if len(ls) != writers*each {
		t.Fatalf("got %d lines, want %d", len(ls), writers*each)
	}
	for _, line := range ls {
		if l, err := parseFailLine(line); err != nil || len(l.paths) != 2 || l.paths[0] != long {
			t.Fatalf("torn line %.80q...: %v", line, err)
		}
	}
}

func TestFailLogRotates(t *testing.T) {
	dir := t.TempDir()
	log, hook := logtest.NewNullLogger()
	const maxMB = 1
	f := openFailLog(filepath.Join(dir, "fail.log"), log, maxMB<<20)
	long := strings.Repeat("y", 10<<10)
	for range 150 { // 1.5 MB
		f.Pushed("t", []string{long}, 0, errors.New("x"))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() > maxMB<<20 {
			t.Errorf("%s is %d bytes, over the %d MB bound", e.Name(), info.Size(), maxMB)
		}
	}
	if len(names) < 2 || !contains(names, "fail.log") {
		t.Errorf("files %q: want fail.log and a rotated backup", names)
	}
	if len(hook.AllEntries()) > 0 {
		t.Errorf("logged %q", hook.LastEntry().Message)
	}
}

// TestFailLogNeverFollowsSymlinks: sersync's stock failLog is in /tmp; a
// link planted there, to a file or dangling, is refused by the check at
// start, and a link planted after it is never written through: the file it
// points to stays untouched, or is never created, and the failure is
// logged instead.
func TestFailLogNeverFollowsSymlinks(t *testing.T) {
	cases := []struct {
		name     string
		dangling bool
	}{
		{"link to a file", false},
		{"dangling link", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			if !tc.dangling {
				if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "fail.log")
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
			if err := CheckFailLog(path); err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), path) {
				t.Fatalf("CheckFailLog = %v; want a refusal naming %s", err, path)
			}
			log, hook := logtest.NewNullLogger()
			f := OpenFailLog(path, log)
			f.Pushed("t", []string{"a"}, 0, errors.New("x"))
			f.Close()
			b, err := os.ReadFile(victim)
			switch {
			case tc.dangling && !errors.Is(err, os.ErrNotExist):
				t.Fatalf("the dangling link's target was created (%v): %q", err, b)
			case !tc.dangling && string(b) != "precious\n":
				t.Fatalf("the link's target was written: %q, %v", b, err)
			}
			if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "failLog") {
				t.Fatalf("the refused write was not logged: %v", hook.AllEntries())
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fakePool records the schedule's calls; replay and full decide them.
type fakePool struct {
	replay  func() ([]Result, error)
	full    func() error
	replays chan string
	fulls   chan []string
}

func newFakePool() *fakePool {
	return &fakePool{replays: make(chan string, 16), fulls: make(chan []string, 16)}
}

func (p *fakePool) Replay(_ context.Context, target string) ([]Result, error) {
	select {
	case p.replays <- target:
	default:
	}
	if p.replay != nil {
		return p.replay()
	}
	return nil, nil
}

func (p *fakePool) FullPushAll(excludes []string) error {
	select {
	case p.fulls <- excludes:
	default:
	}
	if p.full != nil {
		return p.full()
	}
	return nil
}

func scheduleConfig(failEvery time.Duration, crontab bool, cronEvery time.Duration) *config.Config {
	c := &config.Config{}
	c.FailLog.Interval = failEvery
	c.Crontab.Enabled = crontab
	c.Crontab.Interval = cronEvery
	return c
}

func TestNewScheduleJobs(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		want []time.Duration
	}{
		{"replay only", scheduleConfig(60*time.Minute, false, 600*time.Minute), []time.Duration{60 * time.Minute}},
		{"replay and crontab", scheduleConfig(60*time.Minute, true, 600*time.Minute), []time.Duration{60 * time.Minute, 600 * time.Minute}},
		{"odd intervals", scheduleConfig(90*time.Second, true, 25*time.Hour), []time.Duration{90 * time.Second, 25 * time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := logtest.NewNullLogger()
			fake := newFakePool()
			s, err := NewSchedule(tc.cfg, fake, fake, log)
			if err != nil {
				t.Fatalf("NewSchedule: %v", err)
			}
			var got []time.Duration
			for _, e := range s.cron.Entries() {
				cd, ok := e.Schedule.(cron.ConstantDelaySchedule)
				if !ok {
					t.Fatalf("schedule %T, want a constant delay", e.Schedule)
				}
				got = append(got, cd.Delay)
			}
			sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("job intervals %v, want %v", got, tc.want)
			}
		})
	}
}

// scheduled is a started schedule, its pool and what it logged.
type scheduled struct {
	s    *Schedule
	pool *fakePool
	hook *logtest.Hook
}

// startSchedule builds and starts a schedule of cfg on pool. The tests
// start all theirs before waiting on any, so the ~1 s waits overlap.
func startSchedule(t *testing.T, cfg *config.Config, pool *fakePool) scheduled {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	s, err := NewSchedule(cfg, pool, pool, log)
	if err != nil {
		t.Fatal(err)
	}
	return scheduled{started(t, s), pool, hook}
}

// started starts s and makes sure it is stopped when the test ends.
func started(t *testing.T, s *Schedule) *Schedule {
	t.Helper()
	s.Start()
	t.Cleanup(func() { <-s.Stop().Done() })
	return s
}

// ranOnce waits for a call on ch, then stops s and waits for its jobs to
// end, so the caller sees everything the run logged. cron runs an
// "@every 1s" job on the next whole second, so this takes at most ~1 s;
// the tests start all their schedules first, so they wait in parallel.
func ranOnce[T any](t *testing.T, s *Schedule, ch <-chan T) T {
	t.Helper()
	var got T
	select {
	case got = <-ch:
	case <-time.After(3 * time.Second):
		t.Fatal("the job did not run")
	}
	select {
	case <-s.Stop().Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Stop did not end the running job")
	}
	return got
}

func findEntry(hook *logtest.Hook, level logrus.Level, msg string) *logrus.Entry {
	for _, e := range hook.AllEntries() {
		if e.Level == level && e.Message == msg {
			return e
		}
	}
	return nil
}

func TestScheduleReplay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		replay func() ([]Result, error)
		level  logrus.Level
		msg    string // "": nothing about the replay is logged
		fields logrus.Fields
	}{
		{
			name:   "replay fails",
			replay: func() ([]Result, error) { return nil, errors.New("queue closed") },
			level:  logrus.ErrorLevel,
			msg:    "replay failures",
		},
		{
			name: "failures remain",
			replay: func() ([]Result, error) {
				return []Result{{Target: "a", Replayed: 3, StillFailing: 1, Reason: "rsync exit 10"}}, nil
			},
			level:  logrus.WarnLevel,
			msg:    "timed replay: failures remain: rsync exit 10",
			fields: logrus.Fields{"target": "a", "replayed": 3, "still_failing": 1},
		},
		{
			name: "all pushed",
			replay: func() ([]Result, error) {
				return []Result{{Target: "b", Replayed: 2}}, nil
			},
			level:  logrus.InfoLevel,
			msg:    "timed replay: all failures pushed",
			fields: logrus.Fields{"target": "b", "replayed": 2, "still_failing": 0},
		},
		{
			name: "nothing to replay",
			replay: func() ([]Result, error) {
				return []Result{{Target: "c"}}, nil
			},
		},
		{
			name:   "replay panics",
			replay: func() ([]Result, error) { panic("boom") },
			level:  logrus.ErrorLevel,
			msg:    "cron: panic",
		},
	}
	runs := make([]scheduled, len(cases))
	for i, tc := range cases {
		pool := newFakePool()
		pool.replay = tc.replay
		runs[i] = startSchedule(t, scheduleConfig(time.Second, false, time.Hour), pool)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, pool, hook := runs[i].s, runs[i].pool, runs[i].hook
			if target := ranOnce(t, s, pool.replays); target != "" {
				t.Errorf("Replay(%q), want every target (\"\")", target)
			}
			if tc.msg == "" {
				for _, e := range hook.AllEntries() {
					if e.Level <= logrus.InfoLevel {
						t.Errorf("unexpected log %s %q", e.Level, e.Message)
					}
				}
				return
			}
			e := findEntry(hook, tc.level, tc.msg)
			if e == nil {
				var got []string
				for _, e := range hook.AllEntries() {
					got = append(got, e.Level.String()+" "+e.Message)
				}
				t.Fatalf("no %s %q logged; got %q", tc.level, tc.msg, got)
			}
			for k, v := range tc.fields {
				if e.Data[k] != v {
					t.Errorf("field %s = %v, want %v", k, e.Data[k], v)
				}
			}
			if tc.name == "replay panics" {
				if err, _ := e.Data[logrus.ErrorKey].(error); err == nil || err.Error() != "boom" {
					t.Errorf("error field %v, want boom", e.Data[logrus.ErrorKey])
				}
				if st, _ := e.Data["stack"].(string); !strings.Contains(st, "goroutine") {
					t.Errorf("stack field %q, want the panic's stack", e.Data["stack"])
				}
			}
		})
	}
}

func TestScheduleCrontab(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		filter   bool
		excludes []string
		want     []string
		err      error
	}{
		{name: "filter on", filter: true, excludes: []string{"*.php", "tmp/"}, want: []string{"*.php", "tmp/"}},
		{name: "filter off ignores the excludes", filter: false, excludes: []string{"*.php"}, want: nil},
		{name: "full push fails", filter: false, err: errors.New("target down")},
	}
	runs := make([]scheduled, len(cases))
	for i, tc := range cases {
		pool := newFakePool()
		pool.full = func() error { return tc.err }
		cfg := scheduleConfig(time.Hour, true, time.Second)
		cfg.Crontab.FilterEnabled = tc.filter
		cfg.Crontab.FilterExcludes = tc.excludes
		runs[i] = startSchedule(t, cfg, pool)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, pool, hook := runs[i].s, runs[i].pool, runs[i].hook
			got := ranOnce(t, s, pool.fulls)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || len(got) != len(tc.want) {
				t.Errorf("FullPushAll(%q), want %q", got, tc.want)
			}
			if len(pool.replays) != 0 {
				t.Error("the hourly replay ran")
			}
			if findEntry(hook, logrus.InfoLevel, "crontab: full push of the tree to every target") == nil {
				t.Error("the full push was not logged")
			}
			warn := findEntry(hook, logrus.WarnLevel, "crontab full push")
			if (warn != nil) != (tc.err != nil) {
				t.Errorf("warning %v, want one only when the push fails (%v)", warn, tc.err)
			}
		})
	}
}

func TestScheduleStopWaitsForRunningJob(t *testing.T) {
	t.Parallel()
	log, _ := logtest.NewNullLogger()
	pool := newFakePool()
	release := make(chan struct{})
	pool.replay = func() ([]Result, error) {
		<-release
		return nil, nil
	}
	s, err := NewSchedule(scheduleConfig(time.Second, false, time.Hour), pool, pool, log)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	select {
	case <-pool.replays:
	case <-time.After(3 * time.Second):
		close(release)
		<-s.Stop().Done()
		t.Fatal("the replay did not run")
	}
	done := s.Stop()
	select {
	case <-done.Done():
		t.Error("Stop's context ended while the replay still ran")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-done.Done():
	case <-time.After(2 * time.Second):
		t.Error("Stop's context did not end after the replay did")
	}
}

// A job that panicked once runs again at its next time: the panic does not
// leave the skip-if-still-running guard taken.
func TestSchedulePanicDoesNotStopTheJob(t *testing.T) {
	log, _ := logtest.NewNullLogger()
	p := newFakePool()
	var calls atomic.Int32
	p.replay = func() ([]Result, error) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		return nil, nil
	}
	s, err := NewSchedule(scheduleConfig(time.Second, false, 0), p, p, log)
	if err != nil {
		t.Fatal(err)
	}
	started(t, s)
	for i := 0; i < 2; i++ {
		select {
		case <-p.replays:
		case <-time.After(3 * time.Second):
			t.Fatalf("run %d of the replay did not come after a panic in run 1", i+1)
		}
	}
}

// exitErr is a push that the target ended with code, worded as rsync's
// target words it (internal/rsync's TestExitOutcome checks that wording).
func exitErr(code int, meaning string) error {
	return &pusher.PushError{Outcome: pusher.Failed, Code: code, Meaning: meaning,
		Err: fmt.Errorf("rsync exit %d (%s)", code, meaning)}
}
