//go:build unix

package ffmpeg

import (
	"os/exec"
	"syscall"
)

// ownGroup starts cmd in a process group of its own, and makes cancelling
// it kill the group.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
}
