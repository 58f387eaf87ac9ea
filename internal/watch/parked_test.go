package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

// A chmod of a path whose push failed on its own (parked) is recorded with
// the attrib switch off: it may be what makes the file readable.
func TestChmodOfAParkedPathIsRecorded(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"parked", "other"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := startWatcher(t, root, Options{Settle: 20 * time.Millisecond, MaxHold: time.Second,
		Parked: func(rel string) bool { return rel == "parked" }})
	if err != nil {
		t.Fatal(err)
	}
	if allEvents.Attrib {
		t.Fatal("the test needs the attrib switch off")
	}
	// The other file first: once the parked one is handed on, the
	// other's chmod has been handled too.
	for _, name := range []string{"other", "parked"} {
		if err := os.Chmod(filepath.Join(root, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "the parked path's chmod handed on", func() bool { return r.sink.has("parked") })
	time.Sleep(100 * time.Millisecond)
	if r.sink.has("other") {
		t.Error("a chmod was handed on with the attrib switch off, for a path not parked")
	}
}
