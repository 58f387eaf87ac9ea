package daemon

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sersyncd/sersyncd/internal/pusher"
	"github.com/sersyncd/sersyncd/internal/queue"
	"github.com/sersyncd/sersyncd/internal/rsync"
)

// ProgressEvery is how often a full push's progress is logged when no
// terminal shows bars.
const ProgressEvery = 5 * time.Second

// progress shows full pushes: bars per target on a terminal (the log is
// written above them meanwhile), a log line every ProgressEvery otherwise.
type progress struct {
	log *logrus.Logger
	out io.Writer // the log's own output, restored when the bars end

	mu      sync.Mutex
	bars    *mpb.Progress
	bar     map[string]*mpb.Bar
	last    map[string]rsync.Progress
	lastLog map[string]time.Time
}

var _ pusher.Observer = (*progress)(nil)

func newProgress(log *logrus.Logger, out io.Writer, terminal bool, targets []string) *progress {
	p := &progress{log: log, out: out, last: map[string]rsync.Progress{}, lastLog: map[string]time.Time{}}
	if !terminal {
		return p
	}
	p.bars = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithAutoRefresh())
	p.bar = map[string]*mpb.Bar{}
	for _, name := range targets {
		p.bar[name] = p.bars.AddBar(100,
			mpb.PrependDecorators(decor.Name(name+" ", decor.WC{W: len(name) + 1, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Percentage(decor.WC{W: 5}), decor.Any(func(decor.Statistics) string {
				p.mu.Lock()
				defer p.mu.Unlock()
				l := p.last[name]
				return fmt.Sprintf(" %s, %d files, %s, ETA %s", humanBytes(l.Bytes), l.Files, l.Rate, l.ETA)
			})))
	}
	log.SetOutput(p.bars) // log lines go above the bars
	return p
}

// update takes one progress line of a target's full push.
func (p *progress) update(target string, pr rsync.Progress) {
	p.mu.Lock()
	p.last[target] = pr
	bar := p.bar[target]
	due := time.Since(p.lastLog[target]) >= ProgressEvery
	if bar == nil && due {
		p.lastLog[target] = time.Now()
	}
	p.mu.Unlock()
	if bar != nil {
		bar.SetCurrent(int64(min(pr.Percent, 99)))
		return
	}
	if due {
		p.log.WithField("target", target).Infof("full push: %d%%, %s, %d files, %s, ETA %s",
			pr.Percent, humanBytes(pr.Bytes), pr.Files, pr.Rate, pr.ETA)
	}
}

// Pushed ends a target's bar when its full push ends.
func (p *progress) Pushed(target string, paths []string, _ time.Duration, err error) {
	if len(paths) != 1 || paths[0] != queue.FullSync {
		return
	}
	p.mu.Lock()
	bar := p.bar[target]
	delete(p.bar, target)
	left := len(p.bar)
	p.mu.Unlock()
	if bar == nil {
		return
	}
	if err != nil {
		bar.Abort(false)
	} else {
		bar.SetCurrent(100)
	}
	if left == 0 {
		// The bars are done: the log writes straight to its output again.
		p.bars.Wait()
		p.log.SetOutput(p.out)
	}
}

// close ends the bars of pushes that never finished (a stop during -r).
func (p *progress) close() {
	p.mu.Lock()
	bars := p.bars
	for name, bar := range p.bar {
		bar.Abort(false)
		delete(p.bar, name)
	}
	p.mu.Unlock()
	if bars != nil {
		bars.Shutdown()
		p.log.SetOutput(p.out)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
