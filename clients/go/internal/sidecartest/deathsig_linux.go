package sidecartest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the sidecar if the test binary dies without stopping it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
