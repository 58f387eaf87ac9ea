package rsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/pusher"
)

// Target pushes with the rsync binary, to a daemon module or over ssh.
type Target struct {
	opt Options // set once, by New
	// moveMin is the least a renamed path holds to be moved on the target
	// (moveMinSize; tests set 0 to move every rename).
	moveMin int64

	mu      sync.Mutex
	standby *rsyncProc // started ahead, waiting for its list
	closed  bool
}

// The pool owns the interface and the outcome type, as litestream's
// ReplicaClient: rsync imports pusher, pusher never imports rsync.
var (
	_ pusher.Target = (*Target)(nil)
	_ pusher.Prober = (*Target)(nil)
	_ pusher.Warmer = (*Target)(nil)
)

// Options describe a target: where it is, how to reach it, and what it
// reports to.
type Options struct {
	Binary       string   // default config.DefaultRsyncBinary
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
	// Log gets what the pool does not see: a move on the target that
	// failed and was left to the push (move.go). Nil: discarded.
	Log logrus.FieldLogger
}

// New makes the target opt describes.
func New(opt Options) *Target { return &Target{opt: opt, moveMin: moveMinSize} }

// Options returns what New was given.
func (t *Target) Options() Options { return t.opt }

// connectTimeout bounds the connection to an rsync daemon.
const connectTimeout = 30 * time.Second

// Name is the destination, which is what an operator recognises.
func (t *Target) Name() string { return t.opt.Dest }

func (t *Target) binary() string {
	if t.opt.Binary == "" {
		return config.DefaultRsyncBinary
	}
	return t.opt.Binary
}

// commonArgs are the options every push uses, after the user's own.
func (t *Target) commonArgs() []string {
	args := t.optionArgs(t.opt.Params)
	if t.opt.OnBytesSent != nil {
		args = append(args, "--stats")
	}
	return args
}

// optionArgs are params and the options every rsync of the target needs.
func (t *Target) optionArgs(params []string) []string {
	args := append([]string{}, params...)
	// Links are pushed as links, never followed, whatever the params say.
	args = append(args, "--links")
	timeout := t.opt.Timeout
	if timeout <= 0 {
		timeout = config.DefaultRsyncTimeout
	}
	args = append(args, "--timeout="+strconv.Itoa(int(timeout.Seconds())))
	if t.opt.SSHCommand != "" {
		args = append(args, "--rsh="+t.opt.SSHCommand)
	} else {
		args = append(args,
			"--contimeout="+strconv.Itoa(int(connectTimeout.Seconds())),
			// Without it every call pays Nagle and delayed-ACK waits.
			"--sockopts=TCP_NODELAY")
		if t.opt.Port != 0 {
			args = append(args, "--port="+strconv.Itoa(t.opt.Port))
		}
	}
	if t.opt.PasswordFile != "" {
		args = append(args, "--password-file="+t.opt.PasswordFile)
	}
	return args
}

// PushArgs is the argv (without the binary) of a push of listed paths; the
// paths themselves go NUL-separated on stdin, so no name is ever parsed as
// an option or by a shell.
func (t *Target) PushArgs() []string {
	args := t.commonArgs()
	args = append(args,
		// The listed paths are known to have changed: rsync's quick check
		// would skip a same-size rewrite within the same second.
		"--ignore-times",
		// A listed directory is the directory alone: with the -r of the
		// user's "-artuz" rsync would copy all below it, excluded files too.
		"--no-recursive",
		"--relative", "--from0", "--files-from=-")
	if t.opt.KeepDeleted {
		args = append(args, "--ignore-missing-args")
	} else {
		args = append(args, "--delete-missing-args", "--force")
	}
	return append(args, "--", t.opt.Source+"/", t.opt.Dest+"/")
}

// FullPushArgs is the argv of a push of the whole tree; the paths the filter
// excludes go NUL-separated on stdin as anchored exclude rules.
func (t *Target) FullPushArgs(extraExcludes []string) []string {
	args := t.commonArgs()
	for _, pat := range extraExcludes {
		args = append(args, "--exclude="+pat)
	}
	args = append(args, "--recursive")
	if !t.opt.KeepDeleted {
		args = append(args, "--delete", "--force")
	}
	return append(args, "--from0", t.filterArg(), "--", t.opt.Source+"/", t.opt.Dest+"/")
}

// Push replays the renames among changes on the target first (move.go),
// then runs one rsync for all plain changes (the standby one when there
// is one), and the recursive push of the tree changes (tree.go).
func (t *Target) Push(ctx context.Context, changes []change.Change) error {
	changes = pushedWhole(changes, t.runMoves(ctx, t.moves(changes)))
	if len(changes) == 0 {
		return nil // the moves did it all
	}
	return pushError(t.pushChanges(ctx, changes))
}

// push runs one rsync for the listed paths, which underTypeChanges has
// mapped already.
func (t *Target) push(ctx context.Context, paths []string) error {
	list := fileList(paths)
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
	err := t.run(ctx, t.PushArgs(), list)
	if standbyErr != nil && err != nil {
		// The standby's connection may have died in the middle of a file,
		// leaving its temp file on the target: the pool must hear of that,
		// not only of the fresh rsync's error (the target refused, say).
		err = &standbyLostError{err: err, standby: standbyErr}
	}
	t.pushed(err)
	return err
}

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
// deleted files gets the copy alone. A directory the walk could not read
// fails the push after the copy, as rsync's own recursive walk would.
func (t *Target) FullPush(ctx context.Context, extraExcludes []string) error {
	return pushError(t.fullPush(ctx, extraExcludes))
}

func (t *Target) fullPush(ctx context.Context, extraExcludes []string) error {
	if !t.opt.Filter.HasExpressions() {
		return t.run(ctx, t.withProgress(t.FullPushArgs(extraExcludes)), bytes.NewBuffer(t.opt.Filter.Rules().NULList()))
	}
	w, err := t.walk(ctx, "", false, true, 0)
	if err != nil {
		return err
	}
	if !t.opt.KeepDeleted {
		gone, err := t.deletions(ctx, extraExcludes, w.excluded)
		if err != nil {
			return err
		}
		if gone.Len() > 0 {
			if err := t.run(ctx, t.PushArgs(), gone); err != nil {
				return err
			}
		}
	}
	if err := t.run(ctx, t.withProgress(t.CopyListedArgs(extraExcludes)), fileList(w.wanted)); err != nil {
		return err
	}
	if len(w.unreadable) > 0 {
		// The list left out what they hold, and rsync, given the list, did
		// not notice: the full push failed, and stays owed, the rest pushed.
		return fmt.Errorf("full push: could not read %q (and %d more below the source); the rest was pushed", w.unreadable[0], len(w.unreadable)-1)
	}
	return nil
}

// DeletionsArgs is the argv of the dry run that lists what a filtered full
// push deletes (see deletions); the source's excluded paths go on stdin.
func (t *Target) DeletionsArgs(extraExcludes []string) []string {
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
func (t *Target) deletions(ctx context.Context, extraExcludes []string, excluded *bytes.Buffer) (*bytes.Buffer, error) {
	p, err := t.start(t.DeletionsArgs(extraExcludes))
	if err != nil {
		return nil, err
	}
	if err := p.finish(ctx, excluded.Bytes()); err != nil {
		return nil, fmt.Errorf("list deletions: %w", err)
	}
	var extra []Entry
	kept := map[string]bool{} // directories holding an excluded path
	for _, line := range strings.Split(p.stdout.String(), "\n") {
		e, ok := ParseItemize(line)
		if !ok || e.Kind != Extra {
			continue
		}
		if t.opt.Filter.ExcludedAs(e.Path, e.Type == "dir") {
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

// walked is what walk found below a directory of the source.
type walked struct {
	excluded *bytes.Buffer // every excluded path as an anchored exclude rule, NUL-terminated
	wanted   []string      // with withWanted: every other path, relative to the source
	// unreadable: directories (or under itself) whose content could not
	// be read, passed over. rsync reports them when it walks the tree
	// itself; a list of wanted paths leaves out what they hold, and rsync,
	// given the list, does not notice.
	unreadable []string
}

// errTooMany is walk's error when it finds more wanted paths than asked.
var errTooMany = errors.New("too many paths")

// walk lists the source below under (relative; "" for all of it) under the
// filter: every excluded path as an exclude rule anchored at the transfer's
// root (the source's, or with rootUnder under's, for a push of under/ onto
// its own directory), and (withWanted) every other path, up to max of them
// (0: no bound; errTooMany past it). A directory excluded is one rule;
// nothing below it is read. A path that vanished is passed over (its
// removal is a change of its own), and so is one that cannot be read,
// which is noted (walked.unreadable).
func (t *Target) walk(ctx context.Context, under string, rootUnder, withWanted bool, max int) (walked, error) {
	w := walked{excluded: &bytes.Buffer{}}
	start := t.opt.Source
	if under != "" {
		start = t.opt.Source + "/" + under
	}
	root := t.opt.Source
	if rootUnder {
		root = start
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, t.opt.Source), "/")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				w.unreadable = append(w.unreadable, rel)
			}
			return nil
		}
		if p == root {
			return nil
		}
		if t.opt.Filter.ExcludedAs(rel, d.IsDir()) {
			w.excluded.WriteString("/" + escapePattern(p[len(root)+1:]))
			w.excluded.WriteByte(0)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if withWanted {
			if max > 0 && len(w.wanted) == max {
				return errTooMany
			}
			w.wanted = append(w.wanted, rel)
		}
		return ctx.Err()
	})
	if err != nil {
		return walked{}, fmt.Errorf("walk %s: %w", start, err)
	}
	return w, nil
}

// fileList is paths as a push of listed paths reads them on stdin: each
// as "./path", NUL-terminated. rsync skips --files-from entries that start
// with ';' or '#' as comments, even with --from0; "./" keeps every name a
// name.
func fileList(paths []string) *bytes.Buffer {
	var list bytes.Buffer
	for _, p := range paths {
		list.WriteString("./")
		list.WriteString(p)
		list.WriteByte(0)
	}
	return &list
}

// ExcludeRules is what FullPush's deletion pass reads on stdin: every path
// of the source the filter excludes, as an anchored rsync exclude rule,
// NUL-terminated (for --from0 --exclude-from=-). Empty without a filter.
func (t *Target) ExcludeRules(ctx context.Context) ([]byte, error) {
	if t.opt.Filter.Empty() {
		return nil, nil
	}
	w, err := t.walk(ctx, "", false, false, 0)
	if err != nil {
		return nil, err
	}
	return w.excluded.Bytes(), nil
}

// VerifyArgs is the argv of a dry run that lists, one itemized line per
// path ("%i %n"), how the target differs from the source under the rules
// of a push: the user's options, links as links, the filter's excluded
// paths as rules on stdin (ExcludeRules). It deletes and copies nothing:
// --delete only lists what is on the target alone, whether or not the
// target keeps deleted files. The user's -u (--update) is left out: it
// would hide a file newer on the target, which is drift all the same.
// Without checksum rsync's quick check (size and mtime) decides.
func (t *Target) VerifyArgs(checksum bool) []string {
	args := t.optionArgs(withoutUpdate(t.opt.Params))
	args = append(args, "--recursive", "--delete", "--dry-run", "--itemize-changes", "--out-format=%i %n")
	if checksum {
		args = append(args, "--checksum")
	}
	return append(args, "--from0", "--exclude-from=-", "--", t.opt.Source+"/", t.opt.Dest+"/")
}

// VerifyListedArgs is PushArgs as a dry run that itemizes what the push of
// the listed paths would change ("%i %n"): a listed path it leaves out is
// one the push would skip (one newer on the target, with -u).
func (t *Target) VerifyListedArgs() []string {
	return insertBeforeDashes(t.PushArgs(), "--dry-run", "--itemize-changes", "--out-format=%i %n")
}

// KeepsNewer reports whether the user's options hold -u (--update): then a
// push leaves a file that is newer on the target as it is.
func (t *Target) KeepsNewer() bool {
	return !slices.Equal(withoutUpdate(t.opt.Params), t.opt.Params)
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

func (t *Target) withProgress(args []string) []string {
	if t.opt.OnProgress == nil {
		return args
	}
	return insertBeforeDashes(args, "--info=progress2")
}

// DeleteOnlyArgs is the deletion pass of a filtered full push, run dry by
// DeletionsArgs: every
// excluded path goes on stdin as an anchored exclude rule.
func (t *Target) DeleteOnlyArgs(extraExcludes []string) []string {
	return insertBeforeDashes(t.FullPushArgs(extraExcludes), "--existing", "--ignore-existing")
}

// CopyListedArgs is the copy pass of a filtered full push: the listed paths
// with rsync's quick check (most of a tree has not changed).
func (t *Target) CopyListedArgs(extraExcludes []string) []string {
	args := t.commonArgs()
	for _, pat := range extraExcludes {
		args = append(args, "--exclude="+pat)
	}
	args = append(args, "--no-recursive", "--relative", "--from0", "--files-from=-")
	if !t.opt.KeepDeleted {
		args = append(args, "--force")
	}
	return append(args, "--", t.opt.Source+"/", t.opt.Dest+"/")
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
