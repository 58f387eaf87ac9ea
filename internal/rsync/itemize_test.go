package rsync

import (
	"reflect"
	"testing"
)

func TestParseItemize(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Entry
		ok   bool
	}{
		{"missing file", "<f+++++++++ a/newf", Entry{Kind: Missing, Path: "a/newf", Type: "file"}, true},
		{"missing dir", "cd+++++++++ a/nd/", Entry{Kind: Missing, Path: "a/nd", Type: "dir"}, true},
		{"size and perms", "<f.s.p..... top", Entry{Kind: Differs, Path: "top", Type: "file", Changes: []string{"size", "perms"}}, true},
		{"time only", "<f..t...... a/b/f", Entry{Kind: Differs, Path: "a/b/f", Type: "file", Changes: []string{"time"}}, true},
		{"checksum", ">fc........ f", Entry{Kind: Differs, Path: "f", Type: "file", Changes: []string{"content"}}, true},
		{"owner group", ".f....og... f", Entry{Kind: Differs, Path: "f", Type: "file", Changes: []string{"owner", "group"}}, true},
		{"symlink target", "cLc........ link", Entry{Kind: Differs, Path: "link", Type: "symlink", Changes: []string{"symlink target"}}, true},
		{"deleting file", "*deleting   extra", Entry{Kind: Extra, Path: "extra", Type: "file"}, true},
		{"deleting dir", "*deleting   xd/y/", Entry{Kind: Extra, Path: "xd/y", Type: "dir"}, true},
		{"escaped newline", "<f+++++++++ new\\#012line", Entry{Kind: Missing, Path: "new\nline", Type: "file"}, true},
		{"escaped invalid utf-8", "<f+++++++++ \\#377\\#376 bad", Entry{Kind: Missing, Path: "\xff\xfe bad", Type: "file"}, true},
		{"escaped backslash before #ddd", "<f+++++++++ back\\#134#123slash", Entry{Kind: Missing, Path: "back\\#123slash", Type: "file"}, true},
		{"plain backslash", "<f+++++++++ a\\b", Entry{Kind: Missing, Path: "a\\b", Type: "file"}, true},
		{"tab stays", "<f+++++++++ tab\there", Entry{Kind: Missing, Path: "tab\there", Type: "file"}, true},
		{"leading dash and space", "<f+++++++++ -e x ", Entry{Kind: Missing, Path: "-e x ", Type: "file"}, true},
		{"name like an itemize line", "<f+++++++++ <f+++++++++ x", Entry{Kind: Missing, Path: "<f+++++++++ x", Type: "file"}, true},
		{"root time", ".d..t...... ./", Entry{}, false},
		{"root deleted", "*deleting   ./", Entry{}, false},
		{"unchanged (-ii)", ".f          same", Entry{}, false},
		{"rsync message", "sending incremental file list", Entry{}, false},
		{"stats", "total size is 1,234  speedup is 1.00 (DRY RUN)", Entry{}, false},
		{"short", "<f+++", Entry{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseItemize(tc.line)
			if ok != tc.ok {
				t.Fatalf("ParseItemize(%q) ok = %t, want %t (%+v)", tc.line, ok, tc.ok, got)
			}
			if !ok {
				return
			}
			got.Itemize = ""
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseItemize(%q) = %+v, want %+v", tc.line, got, tc.want)
			}
		})
	}
}
