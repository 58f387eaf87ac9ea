// Package verify says whether each target equals the source, under the
// rules of a push: rsync itself compares them, in a dry run that itemizes
// every difference (rsync.Target.VerifyArgs) and changes nothing.
// What it finds can be queued as changes (Repair), so the pushers fix it
// with their usual guarantees.
package verify

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sersyncd/sersyncd/internal/rsync"
)

// Options says how to compare.
type Options struct {
	// Checksum compares contents (rsync --checksum: every file is read on
	// both sides); otherwise size and mtime, rsync's quick check.
	Checksum bool
	// LowPriority runs rsync under nice 19 and the idle I/O class, so a
	// scheduled verify yields to the live pushes and to the host's work.
	LowPriority bool
}

// Result is one target's verdict.
type Result struct {
	Target      string    `json:"target"`
	Checksum    bool      `json:"checksum"`
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"`
	KeepDeleted bool      `json:"delete_off,omitempty"`
	// Error says why the target could not be checked (unreachable, rsync
	// failed); the counts are then what was seen before, if anything.
	Error     string        `json:"error,omitempty"`
	Missing   int           `json:"missing"`
	Differing int           `json:"differing"`
	Extra     int           `json:"extra"`
	Kept      int           `json:"kept"` // extra, but kept on purpose: delete is off
	Entries   []rsync.Entry `json:"entries"`
	Notes     []string      `json:"notes,omitempty"`
}

// Drift is the number of paths that make the target differ from the
// source; paths kept because delete is off are not drift.
func (r *Result) Drift() int { return r.Missing + r.Differing + r.Extra }

// Equal reports whether the target was checked and equals the source.
func (r *Result) Equal() bool { return r.Error == "" && r.Drift() == 0 }

// RepairPaths are the paths a push must carry to end the drift: missing
// and differing ones, and extra ones (deleted by the push, since delete is
// on; a kept path is never among them). A path below an extra directory is
// left out: the push of the directory deletes it all; so is one -u keeps.
func (r *Result) RepairPaths() []string {
	var extraDirs []string
	var out []string
	for _, e := range r.Entries {
		if e.Kind == rsync.Extra && e.Type == "dir" {
			extraDirs = append(extraDirs, e.Path+"/")
		}
	}
next:
	for _, e := range r.Entries {
		if e.Kind == rsync.Kept || e.NewerKept {
			continue
		}
		if e.Kind == rsync.Extra {
			for _, d := range extraDirs {
				if strings.HasPrefix(e.Path, d) {
					continue next
				}
			}
		}
		out = append(out, e.Path)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Target compares t with the source. It never fails: a target that cannot
// be checked has Result.Error.
func Target(ctx context.Context, t *rsync.Target, opt Options) *Result {
	r := &Result{Target: t.Name(), Checksum: opt.Checksum, Started: time.Now(), KeepDeleted: t.Options().KeepDeleted, Entries: []rsync.Entry{}}
	defer func() { r.Seconds = time.Since(r.Started).Seconds() }()
	rules, err := t.ExcludeRules(ctx)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	err = t.RunLines(ctx, t.VerifyArgs(opt.Checksum), rules, opt.LowPriority, func(line string) {
		e, ok := rsync.ParseItemize(line)
		if !ok {
			return
		}
		// A path made after the walk, or one only the target has, is not
		// in the rules: the filter still decides, as for a push.
		if _, _, excluded := t.Options().Filter.Match(e.Path, e.Type == "dir"); excluded {
			return
		}
		if e.Kind == rsync.Extra && t.Options().KeepDeleted {
			e.Kind = rsync.Kept
		}
		if !utf8.ValidString(e.Path) {
			e.PathBytes = []byte(e.Path)
		}
		r.add(e)
	})
	if err != nil {
		r.Error = err.Error()
	}
	if r.Error == "" && r.Differing > 0 && t.KeepsNewer() {
		r.markNewerKept(ctx, t)
	}
	return r
}

// markNewerKept finds the differing paths a push would skip because the
// user's -u keeps what is newer on the target: the dry run of a push of
// them all leaves those out.
func (r *Result) markNewerKept(ctx context.Context, t *rsync.Target) {
	var list bytes.Buffer
	for _, e := range r.Entries {
		if e.Kind == rsync.Differs {
			list.WriteString("./" + e.Path)
			list.WriteByte(0)
		}
	}
	pushed := map[string]bool{}
	err := t.RunLines(ctx, t.VerifyListedArgs(), list.Bytes(), false, func(line string) {
		if e, ok := rsync.ParseItemize(line); ok {
			pushed[e.Path] = true
		}
	})
	if err != nil {
		r.Notes = append(r.Notes, "commonParams has -u (--update), and which differing paths it keeps could not be told: "+err.Error())
		return
	}
	n := 0
	for i := range r.Entries {
		if e := &r.Entries[i]; e.Kind == rsync.Differs && !pushed[e.Path] {
			e.NewerKept = true
			e.Changes = append(e.Changes, "newer on the target")
			n++
		}
	}
	if n > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d differing paths are newer on the target: with -u (--update) in commonParams no push replaces them, --repair included; remove -u, or copy them by hand", n))
	}
}

// DropPending removes the differences that queued changes account for: a
// pending path, what is below it, and the mtime of a directory with a
// pending path below (it moves with its entries). The pushers make those.
func (r *Result) DropPending(pending map[string]bool) {
	if len(pending) == 0 {
		return
	}
	parents := map[string]bool{} // every directory above a pending path
	for p := range pending {
		for i := strings.LastIndexByte(p, '/'); i > 0; i = strings.LastIndexByte(p[:i], '/') {
			parents[p[:i]] = true
		}
	}
	entries := r.Entries
	r.Entries, r.Missing, r.Differing, r.Extra, r.Kept = nil, 0, 0, 0, 0
next:
	for _, e := range entries {
		if pending[e.Path] || (parents[e.Path] && e.Type == "dir" && e.Kind == rsync.Differs && slices.Equal(e.Changes, []string{"time"})) {
			continue
		}
		for i := strings.IndexByte(e.Path, '/'); i > 0; i = nextSlash(e.Path, i) {
			if pending[e.Path[:i]] {
				continue next
			}
		}
		r.add(e)
	}
}

func nextSlash(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func (r *Result) add(e rsync.Entry) {
	switch e.Kind {
	case rsync.Missing:
		r.Missing++
	case rsync.Differs:
		r.Differing++
	case rsync.Extra:
		r.Extra++
	case rsync.Kept:
		r.Kept++
	}
	r.Entries = append(r.Entries, e)
}
