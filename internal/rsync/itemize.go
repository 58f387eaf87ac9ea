// Package rsync is the backend that pushes with the rsync binary, to an
// rsync daemon's module or over ssh: its command lines (target.go), its
// processes (proc.go) and the standby one (standby.go), what its exit codes
// mean (exit.go), its output (--stats, progress: output.go; the itemized
// changes and the escaping of names in them: itemize.go). Target implements
// pusher.Target: the pool sees a push's pusher.Outcome, never an exit code.
// It knows nothing of the config (internal/daemon maps one onto Options).
package rsync

import (
	"strconv"
	"strings"
)

// Kind says how a path on a target differs from the source.
type Kind string

// The kinds of drift; Kept is not drift.
const (
	Missing Kind = "missing" // on the source, not on the target
	Differs Kind = "differs" // on both; content or metadata differ
	Extra   Kind = "extra"   // on the target alone; a push deletes it
	Kept    Kind = "kept"    // on the target alone, kept there: delete is off
)

// Entry is one path that differs.
type Entry struct {
	Kind Kind `json:"kind"`
	// Path is relative to the root, without a trailing slash, as raw bytes
	// (JSON turns invalid UTF-8 into U+FFFD: PathBytes then has the bytes).
	Path      string   `json:"path"`
	PathBytes []byte   `json:"path_bytes,omitempty"`
	Type      string   `json:"type"`              // file, dir, symlink, device, special
	Changes   []string `json:"changes,omitempty"` // Differs: what differs (content, size, time, ...)
	Itemize   string   `json:"itemize"`           // rsync's own 11 letters
	// NewerKept is a differing path that is newer on the target, where the
	// user's -u (--update) makes every push leave it as it is.
	NewerKept bool `json:"newer_kept,omitempty"`
}

var types = map[byte]string{'f': "file", 'd': "dir", 'L': "symlink", 'D': "device", 'S': "special"}

// changeNames name the letters of rsync's itemize string after the type, in
// their order ("cstpoguax"); see rsync(1), --itemize-changes.
var changeNames = [9]map[byte]string{
	{'c': "content"},
	{'s': "size"},
	{'t': "time", 'T': "time"},
	{'p': "perms"},
	{'o': "owner"},
	{'g': "group"},
	{'u': "atime", 'n': "crtime", 'b': "atime and crtime"},
	{'a': "acl"},
	{'x': "xattr"},
}

// ParseItemize reads one line of `rsync --itemize-changes --out-format="%i %n"`
// (without its newline). ok is false for a line that is not an itemized
// path (rsync's own messages, the stats of a -v in the user's options) and
// for a path rsync lists without a difference.
func ParseItemize(line string) (e Entry, ok bool) {
	if len(line) < 13 || line[11] != ' ' {
		return Entry{}, false
	}
	item, name := line[:11], Unescape(line[12:])
	isDir := strings.HasSuffix(name, "/")
	name = strings.TrimSuffix(name, "/")
	if name == "" || name == "." {
		// The root is the module's directory, a container the operator
		// chose: its own attributes are not replicated data.
		return Entry{}, false
	}
	if item == "*deleting  " {
		typ := "file"
		if isDir {
			typ = "dir"
		}
		return Entry{Kind: Extra, Path: name, Type: typ, Itemize: item}, true
	}
	typ, known := types[item[1]]
	if !known || strings.IndexByte("<>ch.", item[0]) < 0 {
		return Entry{}, false
	}
	e = Entry{Path: name, Type: typ, Itemize: item}
	if item[2:] == "+++++++++" {
		e.Kind = Missing
		return e, true
	}
	for i, c := range []byte(item[2:]) {
		if n, ok := changeNames[i][c]; ok {
			if typ == "symlink" && c == 'c' {
				n = "symlink target"
			}
			e.Changes = append(e.Changes, n)
		} else if c != '.' && c != ' ' {
			e.Changes = append(e.Changes, "unknown ("+string(c)+")")
		}
	}
	switch {
	case item[0] == 'h':
		e.Changes = append(e.Changes, "hard link")
	case len(e.Changes) == 0 && item[0] == '.':
		return Entry{}, false // listed with nothing to change (-ii)
	case len(e.Changes) == 0:
		// '>' without a letter: rsync would transfer it all the same.
		e.Changes = append(e.Changes, "content")
	}
	e.Kind = Differs
	return e, true
}

// Unescape undoes rsync's escaping of a name in its output: every byte it
// will not print (a control character, and without -8 every byte of 128 or
// more) is written "\#ooo" in octal, and so is a backslash that starts such
// a sequence; any other backslash is itself.
func Unescape(s string) string {
	if !strings.Contains(s, `\#`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 < len(s) && s[i+1] == '#' && isOctal(s[i+2:i+5]) {
			n, _ := strconv.ParseUint(s[i+2:i+5], 8, 8)
			b.WriteByte(byte(n))
			i += 4
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	// \#400 and above would not be a byte; rsync never writes them.
	return s[0] <= '3'
}
