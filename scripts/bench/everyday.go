package main

// The workloads of issue 11, which measure what a user feels rather than
// the lag after a workload ends: a file saved again and again, an edit
// session with every kind of change, and (runBurst) a burst of new files
// timed from its first write, with the writer's own duration beside its
// duration with nothing watching.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// saveGap is the pause after a save has arrived on every target before
// the next one: an editor's user saving again.
const saveGap = 250 * time.Millisecond

// (7) one file saved whole again and again (open, truncate, write, close),
// each save 0.25 s after the last one arrived everywhere; the latency of
// each save from its write to every target equal.
func runSaved(e *env, c contender, s sizes, r *result) error {
	const rel = "saved/doc.txt"
	var lats []time.Duration
	failed := 0
	for i := 0; i < s.savedN && failed < 3; i++ {
		if err := writeFile(e.src, rel, content(fmt.Sprintf("save %d", i), 4096+i)); err != nil {
			return err
		}
		d, ok, err := converge(e, c, newPathsChecker(e.src, []string{rel}), []string{rel}, 10*time.Second, time.Millisecond)
		if err != nil {
			return err
		}
		if !ok {
			failed++
			r.note("save %d not on every target after 10 s", i+1)
			continue
		}
		lats = append(lats, d)
		time.Sleep(saveGap)
	}
	r.Converged = failed == 0
	if len(lats) == 0 {
		return nil
	}
	med, p90 := percentile(lats, 0.5), percentile(lats, 0.9)
	r.Seconds = med.Seconds()
	r.Summary = fmt.Sprintf("median %s, p90 %s, first save %s, last %s (n=%d)", ms(med), ms(p90), ms(lats[0]), ms(lats[len(lats)-1]), len(lats))
	r.Metrics["median_ms"] = float64(med.Microseconds()) / 1000
	return nil
}

func prepSaved(src string, _ sizes) error {
	if err := os.MkdirAll(filepath.Join(src, "saved"), 0o755); err != nil {
		return err
	}
	return writeFile(src, "saved/doc.txt", content("original", 3000))
}

// sessionRounds: the edit session runs this many times, on trees of its
// own, and the median is reported.
const sessionRounds = 3

// sessionStepGap spaces the steps of an edit session: a person or a build
// tool at work, not one burst that every contender sees as one change.
const sessionStepGap = 25 * time.Millisecond

func sessionRoot(round int) string { return fmt.Sprintf("ses/r%d", round) }

func prepSession(src string, _ sizes) error {
	for round := 0; round < sessionRounds; round++ {
		base := sessionRoot(round)
		for d := 0; d < 5; d++ {
			for f := 0; f < 10; f++ {
				rel := fmt.Sprintf("%s/d%02d/f%02d", base, d, f)
				if err := os.MkdirAll(filepath.Join(src, filepath.Dir(rel)), 0o755); err != nil {
					return err
				}
				if err := writeFile(src, rel, content(rel, 200)); err != nil {
					return err
				}
			}
		}
		if err := os.MkdirAll(filepath.Join(src, base, "dir-to-file"), 0o755); err != nil {
			return err
		}
		for _, f := range []struct{ rel, data string }{
			{"dir-to-file/a", "a"}, {"dir-to-file/b", "b"}, {"file-to-link", "plain"},
			{"trunc", strings.Repeat("t", 4096)}, {"append", strings.Repeat("a", 1024)}, {"doc", strings.Repeat("d", 2048)},
		} {
			if err := writeFile(src, base+"/"+f.rel, []byte(f.data)); err != nil {
				return err
			}
		}
		if err := os.Symlink("doc", filepath.Join(src, base, "link-to-file")); err != nil {
			return err
		}
	}
	return nil
}

// sessionOddNames are created by the edit session.
var sessionOddNames = []string{"with space.txt", "new\nline", "-leading-dash", "semi;colon $(x) `y`", "\xff\xfe invalid utf-8", "star*"}

// session runs one edit session below src/sessionRoot(round) and returns
// the paths it changed (for the limit: every name that came or went).
func session(src string, round int) ([]string, error) {
	base := sessionRoot(round)
	p := func(rel string) string { return filepath.Join(src, base, rel) }
	var changed []string
	note := func(rels ...string) {
		for _, rel := range rels {
			changed = append(changed, base+"/"+rel)
		}
	}
	appendTo := func(rel, data string) error {
		f, err := os.OpenFile(p(rel), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(data); err != nil {
			f.Close()
			return err
		}
		note(rel)
		return f.Close()
	}
	save := func(n int) func() error {
		return func() error {
			note("doc")
			return os.WriteFile(p("doc"), content(fmt.Sprintf("doc %d %d", round, n), 2048+n), 0o644)
		}
	}
	steps := []func() error{
		save(1),
		func() error { return appendTo("append", "one more line\n") },
		save(2),
		func() error { // truncation, as `: > trunc` does
			note("trunc")
			f, err := os.OpenFile(p("trunc"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			return f.Close()
		},
		func() error { note("d00/f00"); return os.Chmod(p("d00/f00"), 0o600) },
		func() error { note("d01/f01", "d01/f01 renamed"); return os.Rename(p("d01/f01"), p("d01/f01 renamed")) },
		func() error { note("d02"); return os.Rename(p("d02"), p("d02 renamed")) },
		func() error { note("d03/f03"); return os.Remove(p("d03/f03")) },
		func() error { note("d04"); return os.RemoveAll(p("d04")) },
		func() error {
			for _, n := range sessionOddNames {
				note(n)
				if err := os.WriteFile(p(n), content(n, 100), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		func() error { note("link to doc"); return os.Symlink("doc", p("link to doc")) },
		func() error { // a file becomes a directory
			note("d00/f05", "d00/f05/inner")
			if err := os.Remove(p("d00/f05")); err != nil {
				return err
			}
			if err := os.Mkdir(p("d00/f05"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(p("d00/f05/inner"), []byte("x"), 0o644)
		},
		func() error { // a directory becomes a file
			note("dir-to-file")
			if err := os.RemoveAll(p("dir-to-file")); err != nil {
				return err
			}
			return os.WriteFile(p("dir-to-file"), []byte("now a file"), 0o644)
		},
		func() error { // a file becomes a symlink
			note("file-to-link")
			if err := os.Remove(p("file-to-link")); err != nil {
				return err
			}
			return os.Symlink("doc", p("file-to-link"))
		},
		func() error { // a symlink becomes a file
			note("link-to-file")
			if err := os.Remove(p("link-to-file")); err != nil {
				return err
			}
			return os.WriteFile(p("link-to-file"), []byte("was a link"), 0o644)
		},
		func() error { return appendTo("append", "and another\n") },
		save(3),
	}
	for i, step := range steps {
		if i > 0 {
			time.Sleep(sessionStepGap)
		}
		if err := step(); err != nil {
			return nil, err
		}
	}
	// The renamed directory's content, for the limit's list.
	_ = filepath.Walk(p("d02 renamed"), func(path string, _ os.FileInfo, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(src, path)
			changed = append(changed, rel)
		}
		return nil
	})
	return changed, nil
}

// (8) the edit session, sessionRounds times 1.5 s apart; time from its
// first write until every target equals the source, median of the rounds.
func runSession(e *env, c contender, s sizes, r *result) error {
	var rounds []time.Duration
	var writer time.Duration
	r.Converged = true
	for round := 0; round < sessionRounds; round++ {
		t0 := time.Now()
		changed, err := session(e.src, round)
		if err != nil {
			return err
		}
		wrote := time.Since(t0)
		writer += wrote
		d, ok, err := converge(e, c, fullChecker{e.src}, changed, boundOf["session"], 10*time.Millisecond)
		if err != nil {
			return err
		}
		rounds = append(rounds, wrote+d)
		if !ok {
			r.Converged = false
			r.note("round %d did not converge within %s", round+1, boundOf["session"])
			break
		}
		time.Sleep(1500 * time.Millisecond)
	}
	med := percentile(rounds, 0.5)
	r.Seconds = med.Seconds()
	r.FirstS = med.Seconds()
	r.WriterS = writer.Seconds()
	var all []string
	for _, d := range rounds {
		all = append(all, fmt.Sprintf("%.3f", d.Seconds()))
	}
	r.Summary = fmt.Sprintf("first write → equal: median %.3f s of %d rounds (%s s)", med.Seconds(), len(rounds), strings.Join(all, ", "))
	r.note("writer: the %d rounds together", sessionRounds)
	r.note("17 steps %s apart per round: rewrites, appends, a truncation, chmod, file and directory renames, deletes, %d odd names, a symlink, four type changes", sessionStepGap, len(sessionOddNames))
	return nil
}

// aloneSession times the session's writer on a copy of the prepared tree
// that nothing watches.
func aloneSession(dir string, s sizes) (time.Duration, error) {
	src := filepath.Join(dir, "alone")
	defer os.RemoveAll(src)
	if err := prepSession(src, s); err != nil {
		return 0, err
	}
	var total time.Duration
	for round := 0; round < sessionRounds; round++ {
		t0 := time.Now()
		if _, err := session(src, round); err != nil {
			return 0, err
		}
		total += time.Since(t0)
	}
	return total, nil
}

// aloneBurst times the burst's writer in a directory nothing watches.
func aloneBurst(dir string, s sizes) (time.Duration, error) {
	src := filepath.Join(dir, "alone")
	defer os.RemoveAll(src)
	if err := os.MkdirAll(filepath.Join(src, "burst"), 0o755); err != nil {
		return 0, err
	}
	t0 := time.Now()
	_, err := writeBurst(src, s)
	return time.Since(t0), err
}
