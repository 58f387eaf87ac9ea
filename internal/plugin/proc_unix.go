//go:build unix

package plugin

import (
	"os/exec"
	"syscall"
)

// killGroup runs cmd in a process group of its own and makes its timeout
// kill the whole group: `sh -c 'sleep 100'` leaves no sleep behind.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
