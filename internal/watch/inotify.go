package watch

// The kernel's inotify, read directly through golang.org/x/sys/unix
// instead of fsnotify. fsnotify (1.10.1, the newest) does not export
// IN_CLOSE_WRITE (only an unexported xUnportableCloseWrite), and
// close-after-write is what tells a file saved whole from one still being
// written: without it a file saved every second was held longer after each
// save, up to 1 s (issue 11). Reading inotify ourselves also gives what
// fsnotify drops: the rename cookie (a file written aside and renamed into
// place inherits what its old name's events said), IN_ISDIR (no lstat per
// created entry) and watches that never follow a symlink (IN_DONT_FOLLOW).
// fsnotify's portability to other kernels bought nothing here: sersyncd is
// inotify-only, like sersync.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// event is one inotify event: the absolute path it names (the watched
// directory itself for its own events), the kernel's mask and the cookie
// that pairs IN_MOVED_FROM with IN_MOVED_TO.
type event struct {
	name   string
	mask   uint32
	cookie uint32
	err    error // the descriptor cannot be read: the last event
}

func (e event) has(mask uint32) bool { return e.mask&mask != 0 }

// watchMask is what every directory watch reports. IN_MODIFY is asked for
// whatever the <modify> switch says: a write says a file is still being
// written, which holds it (settle.go). IN_ATTRIB only when attrib is on
// or a chmod of a parked path counts (Options.Parked): nothing else uses
// it, and cp -p, tar and touch make one per file.
func watchMask(attrib bool) uint32 {
	m := uint32(unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_DELETE |
		unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF |
		unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW)
	if attrib {
		m |= unix.IN_ATTRIB
	}
	return m
}

// inotify reads one inotify instance into events. Watches are added and
// removed by directory path; the reader maps each event's watch back to
// its directory.
type inotify struct {
	f      *os.File // non-blocking: reads wait in Go's poller, Close ends them
	fd     int
	mask   uint32
	events chan event
	done   chan struct{}
	closed sync.Once

	mu    sync.Mutex
	dirs  map[int32]string // watch descriptor -> directory
	watch map[string]int32 // directory -> watch descriptor
}

// readBuffer holds what one read takes from the kernel: 4,096 events
// without names, or about 1,000 with names of 40 bytes.
const readBuffer = 64 << 10

func newInotify(buffer uint, mask uint32) (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	in := &inotify{
		f:      os.NewFile(uintptr(fd), "inotify"),
		fd:     fd,
		mask:   mask,
		events: make(chan event, buffer),
		done:   make(chan struct{}),
		dirs:   map[int32]string{},
		watch:  map[string]int32{},
	}
	go in.read()
	return in, nil
}

// add watches dir. The kernel gives a directory already watched under
// another name (moved, then watched again before the old watch went) the
// same descriptor: it then reports under the new name.
func (in *inotify) add(dir string) error {
	wd, err := unix.InotifyAddWatch(in.fd, dir, in.mask)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if old, ok := in.dirs[int32(wd)]; ok && old != dir {
		delete(in.watch, old)
	}
	in.dirs[int32(wd)] = dir
	in.watch[dir] = int32(wd)
	return nil
}

// remove drops the watch of dir, if there is one. Events of it still
// queued are dropped: they name paths below a directory that went away,
// whose removal is reported under its parent.
func (in *inotify) remove(dir string) {
	in.mu.Lock()
	wd, ok := in.watch[dir]
	if ok {
		delete(in.watch, dir)
		delete(in.dirs, wd)
	}
	in.mu.Unlock()
	if ok {
		// EINVAL: the kernel dropped it already (the directory is gone).
		_, _ = unix.InotifyRmWatch(in.fd, uint32(wd))
	}
}

// close ends the reader; events stays open for what it already holds, and
// is closed once the reader is gone.
func (in *inotify) close() {
	in.closed.Do(func() {
		close(in.done)
		in.f.Close()
	})
}

func (in *inotify) read() {
	defer close(in.events)
	buf := make([]byte, readBuffer)
	var batch []event
	for {
		n, err := in.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Nothing more can be seen: the watcher must stop and say so.
			batch = append(batch[:0], event{err: fmt.Errorf("read inotify: %w", err)})
		} else {
			batch = in.parse(buf[:n], batch[:0])
		}
		for _, ev := range batch {
			select {
			case in.events <- ev:
			case <-in.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// parse turns what one read returned into events, under one lock.
func (in *inotify) parse(b []byte, out []event) []event {
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		mask := binary.NativeEndian.Uint32(b[4:])
		cookie := binary.NativeEndian.Uint32(b[8:])
		size := int(binary.NativeEndian.Uint32(b[12:]))
		if unix.SizeofInotifyEvent+size > len(b) {
			break // the kernel returns whole events only
		}
		name := b[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+size]
		b = b[unix.SizeofInotifyEvent+size:]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1] // NUL padding
		}
		if mask&unix.IN_Q_OVERFLOW != 0 {
			out = append(out, event{mask: mask})
			continue
		}
		dir, ok := in.dirs[wd]
		if !ok {
			continue // a watch removed meanwhile
		}
		if mask&unix.IN_IGNORED != 0 {
			// The kernel dropped the watch (the directory was deleted, or
			// its file system unmounted).
			delete(in.dirs, wd)
			if in.watch[dir] == wd {
				delete(in.watch, dir)
			}
			continue
		}
		p := dir
		if len(name) > 0 {
			p = dir + "/" + string(name)
		}
		out = append(out, event{name: p, mask: mask, cookie: cookie})
	}
	return out
}
