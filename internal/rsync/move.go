package rsync

// Moves on the target: a path renamed within the tree (a change with From)
// is renamed on the target too, before the push of the batch, instead of
// being sent again. Over ssh that is mv on the target host, as lsyncd's
// default.rsyncssh does (default-rsyncssh.lua, rsyncssh.action: for a
// 'Move' event it spawns `ssh host mv 'old' 'new' || rm -rf 'old'`). An
// rsync daemon runs no commands, so there the new path is pushed with the
// old one as its basis (--link-dest), which sends the file list and, for
// what differs, deltas.
//
// A move is only a head start, never trusted: a renamed directory is then
// synced whole from the source (BasisPushArgs), and a renamed file is
// listed in the push of the batch that follows as any change (so is the
// old name, gone from the source), so a stale or wrong hint, a failed move
// or a write after the rename still ends with the target equal to the
// source. A failed move is logged at debug and costs the upload the move
// would have saved, nothing else.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/change"
)

// move is a rename within the tree to replay on a target: what was at
// from (on the target, still) is now at to (on the source).
type move struct {
	from, to string
	// keep: the old name stays on the target (an archive target, or the
	// old name is on the source again): copied from, never moved away or
	// linked to.
	keep bool
}

// moves are the renames among changes, resolved (resolveMoves).
func (t *Target) moves(changes []change.Change) []move {
	var renames []move
	for _, c := range changes {
		if c.From != "" && c.From != c.Path && t.worthMoving(c.Path) {
			renames = append(renames, move{from: c.From, to: c.Path})
		}
	}
	if len(renames) == 0 {
		return nil
	}
	return resolveMoves(t.opt.Source, renames)
}

// moveMinSize: a path renamed within the tree is moved on the target only
// when it holds this much: a file of this size, a directory with this much
// in its files. A move is a call of its own (an rsync session to a daemon,
// an ssh session, and for a directory over ssh a sync after the mv), about
// 10 ms here, in which 1 MiB would have been sent; what is not moved is
// sent by the push of its batch (a directory by the one recursive call of
// the batch's new directories), which runs anyway. A save written aside
// and renamed over the old name (what editors and most tools do) is
// smaller: moving those cost the tree workload (10 such saves) 35 rsync
// sessions per round at K = 1 instead of 4, and 0.087 s instead of 0.021 s
// to converge (make bench). Moving the mixed workload's three renamed
// directories of 2 KiB each cost 18 sessions at K = 3 instead of 9.
const moveMinSize = 1 << 20

// moveMinEntries: the walk that sizes a renamed directory stops after this
// many entries and moves it, whatever their size: the walk must not cost
// what the move saves, and a directory this big is cheaper to move.
const moveMinEntries = 1000

// worthMoving reports whether the renamed path rel is moved on the target
// rather than sent again: a file, or a directory's files, of t.moveMin
// bytes or more, or a directory of moveMinEntries entries. A path gone
// again is kept for resolveMoves, which follows a chain a->b->c through it
// and then drops it.
func (t *Target) worthMoving(rel string) bool {
	path := filepath.Join(t.opt.Source, rel)
	fi, err := os.Lstat(path)
	if err != nil {
		return true
	}
	switch {
	case fi.IsDir():
		return t.moveMin <= 0 || holdsAtLeast(path, t.moveMin, moveMinEntries)
	case fi.Mode().IsRegular():
		return fi.Size() >= t.moveMin
	}
	return false
}

// holdsAtLeast reports whether the directory dir holds files of min bytes
// in all, or entries entries, looking no further than it must. What cannot
// be read counts for nothing.
func holdsAtLeast(dir string, min int64, entries int) bool {
	var size int64
	n := 0
	found := errors.New("enough")
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if n++; n >= entries {
			return found
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				if size += fi.Size(); size >= min {
					return found
				}
			}
		}
		return nil
	})
	return err == found
}

// resolveMoves turns the renames of a batch (to -> from, as the changes'
// From say) into the moves to run on the target, in the batch's order. A
// move whose new path is gone from the source again is none (a later
// rename took it on, or it was removed); a chain a->b->c whose middle name
// is gone is the one move a->c, since the target still has a. A move back
// to its own name (a->b->a) is none.
func resolveMoves(root string, renames []move) []move {
	from := make(map[string]string, len(renames))
	for _, r := range renames {
		from[r.to] = r.from
	}
	var out []move
	for _, r := range renames {
		if !exists(filepath.Join(root, r.to)) {
			continue
		}
		f := r.from
		for range len(renames) { // bounded: a cycle of renames ends here too
			g, ok := from[f]
			if !ok || exists(filepath.Join(root, f)) {
				break
			}
			f = g
		}
		if f == r.to || strings.HasPrefix(r.to, f+"/") || strings.HasPrefix(f, r.to+"/") {
			// mv refuses to move a directory into itself; a rename
			// between a path and its own ancestor has nothing to keep.
			continue
		}
		out = append(out, move{from: f, to: r.to})
	}
	return out
}

// discardLog is the log of a target given none.
var discardLog = func() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}()

func (t *Target) log() logrus.FieldLogger {
	if t.opt.Log == nil {
		return discardLog
	}
	return t.opt.Log
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func isDir(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.IsDir()
}

// runMoves runs each move on the target, ssh or daemon; a move that fails
// is logged and left to the push that follows. It returns the directories
// it left equal to the source (synced whole, after all the batch's changes
// were recorded: see pushedWhole).
func (t *Target) runMoves(ctx context.Context, moves []move) map[string]bool {
	var synced map[string]bool
	for _, m := range moves {
		if ctx.Err() != nil {
			return synced
		}
		if underSynced(m.to, synced) || underSynced(m.from, synced) {
			// Made equal already: a move now would undo it.
			continue
		}
		var err error
		how := "basis push"
		// A name on the source again (log rotation: mv app.log app.log.1,
		// then a new app.log) may have been pushed already, in an earlier
		// batch: moving it away would lose it on the target.
		m.keep = t.opt.KeepDeleted || exists(filepath.Join(t.opt.Source, m.from))
		dir := isDir(filepath.Join(t.opt.Source, m.to))
		switch {
		case t.opt.Filter.ExcludedAs(m.from, dir):
			// Never pushed, so what the target has there is its own.
			err = fmt.Errorf("old path %q is excluded", m.from)
		case t.opt.SSHCommand != "" && !m.keep:
			how = "mv"
			err = t.sshMove(ctx, m)
			if err == nil && dir {
				// What changed inside between the rename and the rescan
				// (BasisPushArgs): the moved content is all in place, so
				// this sends the file list and the differences.
				how = "mv and sync"
				err = t.basisPush(ctx, move{to: m.to})
			}
		default:
			// A daemon target, or an old name kept, which mv would remove.
			err = t.basisPush(ctx, m)
		}
		log := t.log().WithField("target", t.Name()).WithField("from", m.from).WithField("to", m.to)
		if err != nil {
			log.WithError(err).Debugf("move on target by %s failed; the push sends the new path instead", how)
			continue
		}
		log.Debugf("moved on target by %s", how)
		if how != "mv" && dir {
			if synced == nil {
				synced = map[string]bool{}
			}
			synced[m.to] = true
		}
	}
	return synced
}

// pushedWhole drops the changes at or below a directory that a move left
// synced whole: a recursive push of it with --delete (BasisPushArgs),
// which read the source after every change of the batch was recorded, so
// listing them again would only make rsync read them all once more (with
// --ignore-times: 1 s more and a checksum of every block of a renamed
// 200 MiB directory). No move into or out of it ran after its sync
// (runMoves).
func pushedWhole(changes []change.Change, synced map[string]bool) []change.Change {
	if len(synced) == 0 {
		return changes
	}
	out := changes[:0:0]
	for _, c := range changes {
		if !underSynced(c.Path, synced) {
			out = append(out, c)
		}
	}
	return out
}

func underSynced(p string, synced map[string]bool) bool {
	for q := p; q != ""; q = parentDir(q) {
		if synced[q] {
			return true
		}
	}
	return false
}

// shellQuote quotes s for the POSIX shell that runs an ssh command on the
// target: in single quotes, with each ' written '\”. Any byte but NUL
// survives (newline, space, *, $, a leading -), and s is one word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// splitCommand splits an ssh command line into argv as rsync splits its
// -e/--rsh value: on spaces and tabs, with '...' and "..." grouping (and
// \ escaping inside double quotes), so the mv goes through the very ssh,
// key and options the pushes use.
func splitCommand(s string) []string {
	var args []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == ' ' || c == '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args
}

// sshDest splits an ssh destination "[user@]host:dir" into the host for
// ssh and the directory on it ("" is the login directory); an IPv6
// address in brackets loses them.
func sshDest(dest string) (host, dir string) {
	if strings.HasPrefix(dest, "[") {
		if i := strings.Index(dest, "]:"); i > 0 {
			return dest[1:i], dest[i+2:]
		}
	}
	if at := strings.LastIndexByte(dest, '@'); at >= 0 {
		if i := strings.IndexByte(dest[at:], ':'); i >= 0 {
			return dest[:at+i], dest[at+i+1:]
		}
	}
	if i := strings.IndexByte(dest, ':'); i >= 0 {
		return dest[:i], dest[i+1:]
	}
	return dest, ""
}

// remotePath is rel below the target directory dir, as the target's shell
// is to see it.
func remotePath(dir, rel string) string {
	switch {
	case dir == "":
		return rel
	case strings.HasSuffix(dir, "/"):
		return dir + rel
	}
	return dir + "/" + rel
}

// MoveCommand is the argv that replays m on an ssh target: the push's own
// ssh command, the host, then the command line for the target's shell,
// each path quoted for it exactly once (ssh joins the words with spaces
// and the remote shell splits them again). The missing parents of the new
// path are made first: a file renamed into a directory made at the same
// time finds it (the parents' own changes set their attributes in the
// push that follows). mv -T so that a rename onto an existing directory
// replaces it (when empty, as rename(2) does on the source) instead of
// moving into it; "--" so that a name starting with '-' is a name.
func (t *Target) MoveCommand(from, to string) []string {
	host, dir := sshDest(t.opt.Dest)
	argv := splitCommand(t.opt.SSHCommand)
	argv = append(argv, host, "--")
	if parent := parentDir(to); parent != "" {
		argv = append(argv, "mkdir", "-p", "--", shellQuote(remotePath(dir, parent)), "&&")
	}
	return append(argv, "mv", "-T", "--", shellQuote(remotePath(dir, from)), shellQuote(remotePath(dir, to)))
}

// sshMove runs m on an ssh target with MoveCommand.
func (t *Target) sshMove(ctx context.Context, m move) error {
	argv := t.MoveCommand(m.from, m.to)
	if len(argv) < 4 {
		return fmt.Errorf("move %q: no ssh command", m.from)
	}
	timeout := t.opt.Timeout
	if timeout <= 0 {
		timeout = defaultMoveTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// As rsync's: its own group, killed whole, and with sersyncd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("run %s: %w: %s", argv[0], err, strings.TrimSpace(tail(out.String(), 512)))
	}
	return nil
}

// defaultMoveTimeout bounds an ssh mv when no rsync timeout is set: a
// rename is one system call on the target, the rest is the login.
const defaultMoveTimeout = 60 * time.Second

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// BasisPushArgs is the argv of the push of a renamed path with its old
// name on the target as the basis (from "": none, after an ssh mv).
//
// A directory is pushed whole, to/ onto to/, recursively, comparing
// mtimes to the nanosecond, and with --delete (but on an archive target): a name removed or renamed inside
// the directory between its rename and the rescan that watches it at its
// new name (watch/dirs.go) makes no event, and the target, which got the
// old content, must lose it all the same. What the filter excludes below
// it goes on stdin as anchored rules (basisPush walks it), so it is
// neither sent nor deleted.
//
// A file is pushed alone, as "./name" on stdin, from its directory onto
// the same directory on the target, with from's directory as the basis
// and -yy (fuzzy, also in the basis directory): rsync finds the old file
// under its other name by size and mtime. Not on a daemon with use chroot
// = no: there the fuzzy search skips the basis directory (tested, rsync
// 3.5.0; the directory move works), and the file is sent whole.
//
// The basis is relative to the destination directory: an rsync daemon
// resolves it there and sanitises a ".." that would climb out of the
// module, never one that stays in it (tested with use chroot on and off).
// --link-dest hard-links each unchanged file, so nothing is copied on the
// target and the old name's removal leaves the new one. When the old name
// stays (keep: an archive target, or the name is on the source again) it
// gets --copy-dest, which copies: no two live names share an inode that a
// later --inplace push would write through. A file that differs from its basis is sent as a delta
// against it. --mkpath makes the missing parents of the destination.
func (t *Target) BasisPushArgs(from, to string, dir, keep bool) []string {
	srcDir, dstDir := to, to
	basis := from
	if !dir {
		srcDir, dstDir, basis = parentDir(to), parentDir(to), parentDir(from)
	}
	args := t.commonArgs()
	if from != "" {
		up := strings.Repeat("../", depth(dstDir))
		rel := up + basis
		if basis == "" {
			rel = strings.TrimSuffix(up, "/")
			if rel == "" {
				rel = "."
			}
		}
		if keep {
			args = append(args, "--copy-dest="+rel)
		} else {
			args = append(args, "--link-dest="+rel)
		}
	}
	if dir {
		// Mtimes compared to the nanosecond (--modify-window=-1; a
		// receiver of rsync 3.1.3 or later): with rsync's default whole
		// seconds, a file rewritten at the same size within the second
		// of its old copy's mtime (a stale hint, or a write right after
		// the rename) looked unchanged and kept the old content (tested).
		// --checksum did as well, but read every byte on both sides: 0.5 s
		// more for a renamed 200 MiB directory to three ssh targets.
		args = append(args, "--recursive", "--modify-window=-1")
		if !t.opt.KeepDeleted {
			args = append(args, "--delete", "--force")
		}
		args = append(args, "--mkpath", "--from0", "--exclude-from=-")
	} else {
		if from != "" {
			args = append(args, "--fuzzy", "--fuzzy")
		}
		args = append(args, "--mkpath", "--no-recursive", "--from0", "--files-from=-")
	}
	if t.opt.SSHCommand != "" {
		// The destination names a path below the target directory, which
		// rsync passes to the remote rsync through the remote shell,
		// backslash-escaped: a newline so escaped is a line continuation,
		// and "a\nb" arrived as "ab" (tested). With -s the arguments go
		// over the protocol, untouched.
		args = append(args, "--protect-args")
	}
	return append(args, "--", joinDir(t.opt.Source, srcDir), joinDir(t.opt.Dest, dstDir))
}

// depth is how many directories deep rel is ("" is the root, 0).
func depth(rel string) int {
	if rel == "" {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// joinDir is rel below root, with a trailing slash: the content of the
// directory, not the directory itself.
func joinDir(root, rel string) string {
	if rel == "" {
		return root + "/"
	}
	return root + "/" + rel + "/"
}

// errNotMoved says a basis push had nothing to do: the new path is gone
// from the source, or excluded.
var errNotMoved = errors.New("nothing to push at the new path")

// basisPush pushes m.to with m.from on the target as the basis
// (BasisPushArgs; m.from "": none): a file by name, a directory with what
// the filter excludes below it as anchored rules.
func (t *Target) basisPush(ctx context.Context, m move) error {
	root := filepath.Join(t.opt.Source, m.to)
	fi, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("%w: %w", errNotMoved, err)
	}
	if t.opt.Filter.ExcludedAs(m.to, fi.IsDir()) {
		return errNotMoved
	}
	stdin := &bytes.Buffer{}
	if !fi.IsDir() {
		stdin.WriteString("./" + filepath.Base(m.to))
		stdin.WriteByte(0)
		return t.run(ctx, t.BasisPushArgs(m.from, m.to, false, m.keep), stdin)
	}
	if !t.opt.Filter.Empty() {
		// The push is of to/ onto its own directory: rules anchored there.
		w, err := t.walk(ctx, m.to, true, false, 0)
		if err != nil {
			return err
		}
		stdin = w.excluded
	}
	return t.run(ctx, t.BasisPushArgs(m.from, m.to, true, m.keep), stdin)
}
