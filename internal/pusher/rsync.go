package pusher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/rsync"
)

// Target is one backup destination.
type Target interface {
	// Name identifies the target in the queue, logs and metrics.
	Name() string
	// Push makes the listed paths (relative to the source root) on the
	// target equal to the source: existing ones are copied, missing ones
	// are deleted there (unless the target keeps what the source deleted).
	Push(ctx context.Context, paths []string) error
	// FullPush makes the whole tree on the target equal to the source,
	// leaving alone what the filter and the extra rsync exclude patterns
	// (the crontab filter's) exclude.
	FullPush(ctx context.Context, extraExcludes []string) error
	// Close ends what the target keeps between pushes; a push after it
	// still works, and keeps nothing.
	Close() error
}

var _ Target = (*RsyncTarget)(nil)

// RsyncTarget pushes with the rsync binary, to a daemon module or over ssh.
type RsyncTarget struct {
	Binary       string   // default "rsync"
	Source       string   // the watched root
	Dest         string   // "ip::module", "user@ip::module" or "ip:path"
	Params       []string // the user's commonParams
	Port         int      // daemon port, or ssh port when SSHCommand is set
	PasswordFile string
	Timeout      time.Duration // rsync --timeout: I/O silence that ends a push
	SSHCommand   string        // non-empty: push over ssh with this -e command
	Filter       *filter.Filter
	// KeepDeleted is <delete start="false">: an archive target that keeps
	// what the source deleted. No push deletes anything there: a listed
	// path gone from the source is skipped, a full push has no --delete,
	// and without --force a directory the source replaced by a file fails
	// the push (loudly, kept as a failure) instead of being removed.
	KeepDeleted bool
	// StderrTail bounds how much of rsync's stderr is kept with an error.
	StderrTail int
	// OnBytesSent, when set, gets what each push sent (rsync --stats).
	OnBytesSent func(target string, n int64)
	// OnProgress, when set, gets rsync's progress during full pushes.
	OnProgress func(target string, p Progress)
	// Standby, when positive, keeps an rsync started ahead for the next
	// push, for this long after each push that succeeded (see standby.go).
	Standby time.Duration

	mu      sync.Mutex
	standby *rsyncProc // started ahead, waiting for its list
	closed  bool
}

// Progress is one line of rsync's --info=progress2.
type Progress struct {
	Bytes   int64  // transferred so far
	Percent int    // of the total known so far
	Rate    string // as rsync prints it, e.g. "12.34MB/s"
	ETA     string // h:mm:ss
	Files   int    // files transferred (xfr#)
	Left    int    // files still to check
	Total   int    // files known so far
}

// DefaultTimeout ends a push to a target that stopped answering when the
// config sets no timeout: a push hanging forever would hold its records
// and a worker forever, silently.
var DefaultTimeout = 300 * time.Second

// ConnectTimeout bounds the connection to an rsync daemon.
var ConnectTimeout = 30 * time.Second

// NewRsyncTargets builds one target per remote of the source tree src,
// with flt, src's filter.
func NewRsyncTargets(c *config.Config, src *config.Source, flt *filter.Filter) []*RsyncTarget {
	var ts []*RsyncTarget
	for _, r := range src.Remotes {
		t := &RsyncTarget{
			Binary:  c.Daemon.Rsync, // "" is rsync from PATH
			Source:  src.Path,
			Dest:    c.Destination(r),
			Params:  c.Rsync.CommonParams,
			Port:    c.Rsync.Port,
			Timeout: c.Rsync.Timeout,
			Filter:  flt,
			// sersync (FileSynchronize.cpp) passes --delete only when
			// <delete start="true">, on event pushes and full pushes alike.
			KeepDeleted: !c.Events.Delete,
		}
		if c.Rsync.Auth.Enabled {
			t.PasswordFile = c.Rsync.Auth.PasswordFile
		}
		if c.Rsync.SSH.Enabled {
			t.SSHCommand = c.Rsync.SSH.Command
			if t.SSHCommand == "" {
				t.SSHCommand = "ssh"
			}
			if t.Port != 0 {
				t.SSHCommand += " -p " + strconv.Itoa(t.Port)
			}
		}
		ts = append(ts, t)
	}
	return ts
}

// Name is the destination, which is what an operator recognises.
func (t *RsyncTarget) Name() string { return t.Dest }

func (t *RsyncTarget) binary() string {
	if t.Binary == "" {
		return "rsync"
	}
	return t.Binary
}

// commonArgs are the options every push uses, after the user's own.
func (t *RsyncTarget) commonArgs() []string {
	args := t.optionArgs(t.Params)
	if t.OnBytesSent != nil {
		args = append(args, "--stats")
	}
	return args
}

// optionArgs are params and the options every rsync of the target needs.
func (t *RsyncTarget) optionArgs(params []string) []string {
	args := append([]string{}, params...)
	// Links are pushed as links, never followed, whatever the params say.
	args = append(args, "--links")
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	args = append(args, "--timeout="+strconv.Itoa(int(timeout.Seconds())))
	if t.SSHCommand != "" {
		args = append(args, "--rsh="+t.SSHCommand)
	} else {
		args = append(args,
			"--contimeout="+strconv.Itoa(int(ConnectTimeout.Seconds())),
			// Without it every call pays Nagle and delayed-ACK waits.
			"--sockopts=TCP_NODELAY")
		if t.Port != 0 {
			args = append(args, "--port="+strconv.Itoa(t.Port))
		}
	}
	if t.PasswordFile != "" {
		args = append(args, "--password-file="+t.PasswordFile)
	}
	return args
}

// PushArgs is the argv (without the binary) of a push of listed paths; the
// paths themselves go NUL-separated on stdin, so no name is ever parsed as
// an option or by a shell.
func (t *RsyncTarget) PushArgs() []string {
	args := t.commonArgs()
	args = append(args,
		// The listed paths are known to have changed: rsync's quick check
		// would skip a same-size rewrite within the same second.
		"--ignore-times",
		// A listed directory is the directory alone: with the -r of the
		// user's "-artuz" rsync would copy all below it, excluded files too.
		"--no-recursive",
		"--relative", "--from0", "--files-from=-")
	if t.KeepDeleted {
		args = append(args, "--ignore-missing-args")
	} else {
		args = append(args, "--delete-missing-args", "--force")
	}
	return append(args, "--", t.Source+"/", t.Dest+"/")
}

// FullPushArgs is the argv of a push of the whole tree; the paths the filter
// excludes go NUL-separated on stdin as anchored exclude rules.
func (t *RsyncTarget) FullPushArgs(extraExcludes []string) []string {
	args := t.commonArgs()
	for _, pat := range extraExcludes {
		args = append(args, "--exclude="+pat)
	}
	args = append(args, "--recursive")
	if !t.KeepDeleted {
		args = append(args, "--delete", "--force")
	}
	stdin := "--exclude-from=-"
	if !t.Filter.HasExpressions() && !t.Filter.Rules().Empty() {
		// rsync applies the rsync-style rules itself: the very rules
		// sersyncd decided live pushes with go on stdin (Rules.NULList).
		stdin = "--filter=merge -"
	}
	return append(args, "--from0", stdin, "--", t.Source+"/", t.Dest+"/")
}

// Push runs one rsync for all paths: the standby one when there is one.
func (t *RsyncTarget) Push(ctx context.Context, paths []string) error {
	var list bytes.Buffer
	for _, p := range underTypeChanges(t.Source, paths) {
		// rsync skips --files-from entries that start with ';' or '#' as
		// comments, even with --from0; "./" keeps every name a name.
		list.WriteString("./")
		list.WriteString(p)
		list.WriteByte(0)
	}
	var standbyErr error
	if p := t.takeStandby(); p != nil {
		err := p.finish(ctx, list.Bytes())
		if !lostConnection(err) || ctx.Err() != nil {
			t.pushed(err)
			return err
		}
		// Its connection can drop while it waits (the daemon restarted,
		// or its timeout is shorter than Standby): one fresh rsync more,
		// as the push would have been without a standby.
		standbyErr = err
	}
	err := t.run(ctx, t.PushArgs(), &list)
	if standbyErr != nil && err != nil {
		// The standby's connection may have died in the middle of a file,
		// leaving its temp file on the target: the pool must hear of that,
		// not only of the fresh rsync's error (the target refused, say).
		err = &standbyLostError{err: err, standby: standbyErr}
	}
	t.pushed(err)
	return err
}

// standbyLostError is a push whose standby lost its connection with the
// list in hand, and whose fresh retry failed too: the retry's error, and
// the knowledge that a transfer may have been cut off.
type standbyLostError struct {
	err, standby error
}

func (e *standbyLostError) Error() string { return e.err.Error() }
func (e *standbyLostError) Unwrap() error { return e.err }

// FullPush makes the target equal to the source. Without sersync's
// expressions that is one recursive rsync with --delete (and the rsync-style
// rules, if any, on stdin). The filter's regular expressions cannot
// be written as rsync patterns, so with one the tree is walked and pushed in
// up to three calls: a dry run of a deletion-only pass lists what the target
// has alone, the filter keeps what it excludes of that (deletions), the
// rest is deleted as missing listed paths, then a copy of exactly the
// walked, wanted paths. An excluded
// file made after the walk is in neither list, so it never reaches the
// target, as a single recursive call would have let it. A target that keeps
// deleted files gets the copy alone.
func (t *RsyncTarget) FullPush(ctx context.Context, extraExcludes []string) error {
	if !t.Filter.HasExpressions() {
		return t.run(ctx, t.withProgress(t.FullPushArgs(extraExcludes)), bytes.NewBuffer(t.Filter.Rules().NULList()))
	}
	excluded, wanted, err := t.walk(ctx, true)
	if err != nil {
		return err
	}
	if !t.KeepDeleted {
		gone, err := t.deletions(ctx, extraExcludes, excluded)
		if err != nil {
			return err
		}
		if gone.Len() > 0 {
			if err := t.run(ctx, t.PushArgs(), gone); err != nil {
				return err
			}
		}
	}
	return t.run(ctx, t.withProgress(t.CopyListedArgs(extraExcludes)), wanted)
}

// DeletionsArgs is the argv of the dry run that lists what a filtered full
// push deletes (see deletions); the source's excluded paths go on stdin.
func (t *RsyncTarget) DeletionsArgs(extraExcludes []string) []string {
	return insertBeforeDashes(t.DeleteOnlyArgs(extraExcludes), "--dry-run", "--itemize-changes", "--out-format=%i %n")
}

// deletions asks rsync, in a dry run of the deletion pass, what the target
// has that the source has not, and keeps what the filter does not exclude,
// as a list for PushArgs (whose --delete-missing-args removes each). The
// source's excluded paths go to rsync as anchored rules, but an excluded
// path that only the target has (a backup's own file) is known only here:
// a --delete pass given the list of rules alone removed it. A directory
// holding such a path stays, as rsync leaves a directory with protected
// contents.
func (t *RsyncTarget) deletions(ctx context.Context, extraExcludes []string, excluded *bytes.Buffer) (*bytes.Buffer, error) {
	p, err := t.start(t.DeletionsArgs(extraExcludes))
	if err != nil {
		return nil, err
	}
	if err := p.finish(ctx, excluded.Bytes()); err != nil {
		return nil, fmt.Errorf("list deletions: %w", err)
	}
	var extra []rsync.Entry
	kept := map[string]bool{} // directories holding an excluded path
	for _, line := range strings.Split(p.stdout.String(), "\n") {
		e, ok := rsync.ParseItemize(line)
		if !ok || e.Kind != rsync.Extra {
			continue
		}
		if t.Filter.ExcludedAs(e.Path, e.Type == "dir") {
			for dir := parentDir(e.Path); dir != ""; dir = parentDir(dir) {
				kept[dir] = true
			}
			continue
		}
		extra = append(extra, e)
	}
	gone := &bytes.Buffer{}
	for _, e := range extra {
		if kept[e.Path] {
			continue
		}
		gone.WriteString("./" + e.Path)
		gone.WriteByte(0)
	}
	return gone, nil
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// walk lists the source under the filter: every excluded path as an
// anchored exclude rule, and (withWanted) every other path as "./rel", both
// NUL-terminated. A directory excluded is one rule; nothing below it is read.
func (t *RsyncTarget) walk(ctx context.Context, withWanted bool) (excluded, wanted *bytes.Buffer, err error) {
	excluded, wanted = &bytes.Buffer{}, &bytes.Buffer{}
	err = filepath.WalkDir(t.Source, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == t.Source {
			return nil // vanished or unreadable: rsync reports it itself
		}
		rel := p[len(t.Source)+1:]
		if t.Filter.ExcludedAs(rel, d.IsDir()) {
			excluded.WriteString("/" + escapePattern(rel))
			excluded.WriteByte(0)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if withWanted {
			wanted.WriteString("./" + rel)
			wanted.WriteByte(0)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("walk %s: %w", t.Source, err)
	}
	return excluded, wanted, nil
}

// ExcludeRules is what FullPush's deletion pass reads on stdin: every path
// of the source the filter excludes, as an anchored rsync exclude rule,
// NUL-terminated (for --from0 --exclude-from=-). Empty without a filter.
func (t *RsyncTarget) ExcludeRules(ctx context.Context) ([]byte, error) {
	if t.Filter.Empty() {
		return nil, nil
	}
	excluded, _, err := t.walk(ctx, false)
	if err != nil {
		return nil, err
	}
	return excluded.Bytes(), nil
}

// VerifyArgs is the argv of a dry run that lists, one itemized line per
// path ("%i %n"), how the target differs from the source under the rules
// of a push: the user's options, links as links, the filter's excluded
// paths as rules on stdin (ExcludeRules). It deletes and copies nothing:
// --delete only lists what is on the target alone, whether or not the
// target keeps deleted files. The user's -u (--update) is left out: it
// would hide a file newer on the target, which is drift all the same.
// Without checksum rsync's quick check (size and mtime) decides.
func (t *RsyncTarget) VerifyArgs(checksum bool) []string {
	args := t.optionArgs(withoutUpdate(t.Params))
	args = append(args, "--recursive", "--delete", "--dry-run", "--itemize-changes", "--out-format=%i %n")
	if checksum {
		args = append(args, "--checksum")
	}
	return append(args, "--from0", "--exclude-from=-", "--", t.Source+"/", t.Dest+"/")
}

// VerifyListedArgs is PushArgs as a dry run that itemizes what the push of
// the listed paths would change ("%i %n"): a listed path it leaves out is
// one the push would skip (one newer on the target, with -u).
func (t *RsyncTarget) VerifyListedArgs() []string {
	return insertBeforeDashes(t.PushArgs(), "--dry-run", "--itemize-changes", "--out-format=%i %n")
}

// KeepsNewer reports whether the user's options hold -u (--update): then a
// push leaves a file that is newer on the target as it is.
func (t *RsyncTarget) KeepsNewer() bool {
	return !slices.Equal(withoutUpdate(t.Params), t.Params)
}

// withoutUpdate drops -u and --update from rsync options, also from a
// cluster such as -artuz; the letters after one that takes a value (-B1024,
// -e ssh, ...) are that value and stay as they are.
func withoutUpdate(params []string) []string {
	var out []string
	for _, p := range params {
		switch {
		case p == "--update":
			continue
		case strings.HasPrefix(p, "--") || !strings.HasPrefix(p, "-"):
			out = append(out, p)
			continue
		}
		b := []byte{'-'}
		for i := 1; i < len(p); i++ {
			c := p[i]
			if strings.IndexByte("BeTfM@", c) >= 0 {
				b = append(b, p[i:]...)
				break
			}
			if c != 'u' {
				b = append(b, c)
			}
		}
		if len(b) > 1 {
			out = append(out, string(b))
		}
	}
	return out
}

func (t *RsyncTarget) withProgress(args []string) []string {
	if t.OnProgress == nil {
		return args
	}
	return insertBeforeDashes(args, "--info=progress2")
}

// DeleteOnlyArgs is the deletion pass of a filtered full push, run dry by
// DeletionsArgs: every
// excluded path goes on stdin as an anchored exclude rule.
func (t *RsyncTarget) DeleteOnlyArgs(extraExcludes []string) []string {
	return insertBeforeDashes(t.FullPushArgs(extraExcludes), "--existing", "--ignore-existing")
}

// CopyListedArgs is the copy pass of a filtered full push: the listed paths
// with rsync's quick check (most of a tree has not changed).
func (t *RsyncTarget) CopyListedArgs(extraExcludes []string) []string {
	args := t.commonArgs()
	for _, pat := range extraExcludes {
		args = append(args, "--exclude="+pat)
	}
	args = append(args, "--no-recursive", "--relative", "--from0", "--files-from=-")
	if !t.KeepDeleted {
		args = append(args, "--force")
	}
	return append(args, "--", t.Source+"/", t.Dest+"/")
}

func insertBeforeDashes(args []string, extra ...string) []string {
	for i, a := range args {
		if a == "--" {
			out := append(append(append([]string{}, args[:i]...), extra...), args[i:]...)
			return out
		}
	}
	return append(args, extra...)
}

// escapePattern makes rsync match rel literally: a rule with wildcards
// treats a backslash as an escape, one without does not, so escape only then.
func escapePattern(rel string) string {
	if !strings.ContainsAny(rel, "*?[") {
		return rel
	}
	var b strings.Builder
	for _, r := range []byte(rel) {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(r)
	}
	return b.String()
}

func (t *RsyncTarget) run(ctx context.Context, args []string, stdin *bytes.Buffer) error {
	p, err := t.start(args)
	if err != nil {
		return err
	}
	return p.finish(ctx, stdin.Bytes())
}

// rsyncProc is a started rsync that reads its list (of files, or of
// excludes) from a pipe.
type rsyncProc struct {
	t              *RsyncTarget
	cmd            *exec.Cmd
	list           *os.File // the write end of rsync's stdin
	stdout, stderr bytes.Buffer
	done           chan struct{} // closed once rsync has exited
	waitErr        error         // cmd.Wait's, once done is closed
	idle           *time.Timer   // a standby's: ends it when unused
}

// start runs rsync with args; it waits for its list on stdin, which an
// rsync of a daemon or ssh target reads only once connected (see Standby).
func (t *RsyncTarget) start(args []string) (*rsyncProc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start rsync: %w", err)
	}
	p := &rsyncProc{t: t, list: w, done: make(chan struct{})}
	p.cmd = exec.Command(t.binary(), args...)
	p.cmd.Stdin = r
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if t.OnProgress != nil && slices.Contains(args, "--info=progress2") {
		p.cmd.Stdout = &progressWriter{target: t.Name(), fn: t.OnProgress, rest: &p.stdout}
	}
	// Its own process group, so a cancelled push kills ssh too; and killed
	// with sersyncd, so no orphan races the next instance's pushes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.WaitDelay = 5 * time.Second
	err = p.cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start rsync: %w", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether rsync has ended already.
func (p *rsyncProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends rsync's whole process group (ssh included).
func (p *rsyncProc) kill() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

// finish hands rsync its list and waits for it to end; ctx ending kills it.
func (p *rsyncProc) finish(ctx context.Context, list []byte) error {
	stop := context.AfterFunc(ctx, p.kill)
	defer stop()
	// A large list fills the pipe: this write returns once rsync has read
	// it all, or fails when rsync has died, which its exit status explains.
	_, writeErr := p.list.Write(list)
	p.list.Close()
	<-p.done
	t, err := p.t, p.waitErr
	if t.OnBytesSent != nil {
		if n, ok := bytesSent(p.stdout.Bytes()); ok {
			t.OnBytesSent(t.Name(), n)
		}
	}
	if err == nil {
		if writeErr != nil {
			// Never reached in practice; but a push is only done if rsync
			// had its whole list.
			return fmt.Errorf("write file list to rsync: %w", writeErr)
		}
		return nil
	}
	tail := t.StderrTail
	if tail <= 0 {
		tail = 2048
	}
	msg := p.stderr.Bytes()
	if len(msg) > tail {
		msg = msg[len(msg)-tail:]
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() >= 0 {
		code := exitErr.ExitCode()
		if code == 24 {
			// Source files vanished during the push: each vanishing is an
			// event of its own and is pushed (as a deletion) after this.
			return nil
		}
		return &ExitError{Code: code, Stderr: strings.TrimSpace(string(msg))}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run rsync: %w", ctx.Err())
	}
	return fmt.Errorf("run rsync: %w", err)
}

// ExitError is a push that rsync ended with a non-zero exit code.
type ExitError struct {
	Code   int
	Stderr string // the tail of rsync's stderr
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("rsync exit %d (%s)", e.Code, ExitMeaning(e.Code))
	if line := lastLine(e.Stderr); line != "" {
		s += ": " + line
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	// The daemon's own refusal ("@ERROR: auth failed on module x",
	// "ERROR: module is read only") says why; what follows it is only the
	// connection going down.
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "@ERROR") || strings.HasPrefix(l, "ERROR:") {
			return l
		}
	}
	// rsync ends with a summary line ("rsync error: ... (code N) at ..."):
	// the line before it usually says what actually went wrong.
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "rsync error:") {
			return l
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// ExitMeaning names rsync's exit codes as its manual does.
func ExitMeaning(code int) string {
	if m, ok := exitMeanings[code]; ok {
		return m
	}
	return "unknown rsync exit code"
}

var exitMeanings = map[int]string{
	0:   "success",
	1:   "syntax or usage error",
	2:   "protocol incompatibility",
	3:   "errors selecting input/output files, dirs",
	4:   "requested action not supported",
	5:   "error starting client-server protocol",
	6:   "daemon unable to append to log-file",
	10:  "error in socket I/O",
	11:  "error in file I/O",
	12:  "error in rsync protocol data stream",
	13:  "errors with program diagnostics",
	14:  "error in IPC code",
	20:  "received SIGUSR1 or SIGINT",
	21:  "some error returned by waitpid()",
	22:  "error allocating core memory buffers",
	23:  "partial transfer due to error",
	24:  "partial transfer due to vanished source files",
	25:  "the --max-delete limit stopped deletions",
	30:  "timeout in data send/receive",
	35:  "timeout waiting for daemon connection",
	255: "ssh connection failed or remote command error",
}

// progressWriter parses rsync's progress lines ('\r'-separated) as they
// come, and keeps the rest of the output.
type progressWriter struct {
	target string
	fn     func(string, Progress)
	line   []byte
	rest   *bytes.Buffer
}

var progressLine = regexp.MustCompile(`^\s*([\d,]+)\s+(\d+)%\s+(\S+)\s+(\d+:\d+:\d+)(?:\s+\(xfr#(\d+), (?:ir|to)-chk=(\d+)/(\d+)\))?`)

func (w *progressWriter) Write(b []byte) (int, error) {
	for _, c := range b {
		if c != '\r' && c != '\n' {
			w.line = append(w.line, c)
			continue
		}
		if m := progressLine.FindSubmatch(w.line); m != nil {
			var p Progress
			p.Bytes, _ = strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
			p.Percent, _ = strconv.Atoi(string(m[2]))
			p.Rate, p.ETA = string(m[3]), string(m[4])
			p.Files, _ = strconv.Atoi(string(m[5]))
			p.Left, _ = strconv.Atoi(string(m[6]))
			p.Total, _ = strconv.Atoi(string(m[7]))
			w.fn(w.target, p)
		} else {
			w.rest.Write(w.line)
			w.rest.WriteByte('\n')
		}
		w.line = w.line[:0]
	}
	return len(b), nil
}

// bytesSent reads "Total bytes sent: 1,234" from rsync's --stats.
func bytesSent(out []byte) (int64, bool) {
	const key = "Total bytes sent: "
	i := bytes.Index(out, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := out[i+len(key):]
	var n int64
	digits := 0
	for _, c := range rest {
		switch {
		case c >= '0' && c <= '9':
			n = n*10 + int64(c-'0')
			digits++
		case c == ',' || c == '.':
		default:
			return n, digits > 0
		}
	}
	return n, digits > 0
}
