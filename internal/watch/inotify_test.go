package watch

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// raw is one event as the kernel writes it: the header, then the name
// padded with NULs.
func raw(wd int32, mask, cookie uint32, name string, pad int) []byte {
	b := make([]byte, unix.SizeofInotifyEvent+len(name)+pad)
	binary.NativeEndian.PutUint32(b[0:], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[8:], cookie)
	binary.NativeEndian.PutUint32(b[12:], uint32(len(name)+pad))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func TestInotifyParse(t *testing.T) {
	cases := []struct {
		name string
		buf  [][]byte
		want []event
		dirs int // watches left
	}{
		{"a name padded with NULs, below its directory",
			[][]byte{raw(1, unix.IN_CLOSE_WRITE, 0, "f.txt", 3)},
			[]event{{name: "/r/f.txt", mask: unix.IN_CLOSE_WRITE}}, 2},
		{"a rename's two halves keep their cookie",
			[][]byte{raw(1, unix.IN_MOVED_FROM, 7, ".f.swp", 2), raw(2, unix.IN_MOVED_TO, 7, "f", 3)},
			[]event{{name: "/r/.f.swp", mask: unix.IN_MOVED_FROM, cookie: 7}, {name: "/r/sub/f", mask: unix.IN_MOVED_TO, cookie: 7}}, 2},
		{"a directory's own event names the directory",
			[][]byte{raw(2, unix.IN_DELETE_SELF, 0, "", 0)},
			[]event{{name: "/r/sub", mask: unix.IN_DELETE_SELF}}, 2},
		{"an overflow has no watch",
			[][]byte{raw(-1, unix.IN_Q_OVERFLOW, 0, "", 0)},
			[]event{{mask: unix.IN_Q_OVERFLOW}}, 2},
		{"IN_IGNORED drops the watch, and later events of it",
			[][]byte{raw(2, unix.IN_IGNORED, 0, "", 0), raw(2, unix.IN_CREATE, 0, "late", 4)},
			nil, 1},
		{"an unknown watch is dropped",
			[][]byte{raw(9, unix.IN_CREATE, 0, "x", 3)},
			nil, 2},
		{"a truncated event is not read",
			[][]byte{raw(1, unix.IN_CREATE, 0, "whole", 3), raw(1, unix.IN_CREATE, 0, "cut", 5)[:20]},
			[]event{{name: "/r/whole", mask: unix.IN_CREATE}}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &inotify{dirs: map[int32]string{1: "/r", 2: "/r/sub"}, watch: map[string]int32{"/r": 1, "/r/sub": 2}}
			var b []byte
			for _, e := range tc.buf {
				b = append(b, e...)
			}
			got := in.parse(b, nil)
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			if len(in.dirs) != tc.dirs || len(in.watch) != tc.dirs {
				t.Errorf("%d/%d watches left, want %d", len(in.dirs), len(in.watch), tc.dirs)
			}
		})
	}
}
