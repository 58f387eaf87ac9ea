package rsync

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

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
