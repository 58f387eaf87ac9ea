package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// RsyncAsNobody writes, in a directory of its own, an executable "rsync"
// that runs the real one as nobody (uid and gid 65534, no groups), and
// returns its path. A test of a file rsync cannot read needs it: root reads
// everything. The test is skipped without root, setpriv or rsync.
func RsyncAsNobody(t testing.TB) string {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and setpriv to run rsync as nobody")
	}
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		t.Skip("no rsync")
	}
	bin := filepath.Join(t.TempDir(), "rsync")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --reuid=65534 --regid=65534 --clear-groups %s \"$@\"\n", setpriv, rsync)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatalf("write the rsync wrapper: %v", err)
	}
	return bin
}
