package daemon

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sersyncd/sersyncd/internal/queue"
)

// openQueue opens the queue file. A damaged one is moved aside, kept for
// inspection, and replaced by a fresh queue that owes every target a full
// push: the changes recorded only in the damaged file are lost otherwise.
func openQueue(path string, targets []string, log logrus.FieldLogger) (*queue.Queue, error) {
	q, err := queue.Open(path, targets)
	var damaged *queue.DamagedError
	if !errors.As(err, &damaged) {
		return q, err
	}
	aside := path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return nil, fmt.Errorf("%w; moving it aside failed: %w", damaged, err)
	}
	log.Errorf("%v: moved it to %s and starting a fresh queue; pushing the whole tree to every target, since the changes recorded only in it are lost", damaged, aside)
	if q, err = queue.Open(path, targets); err != nil {
		return nil, err
	}
	if err := q.MarkMissed(fmt.Sprintf("the queue file was damaged (%s; moved to %s)", damaged.Problem, aside)); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}
