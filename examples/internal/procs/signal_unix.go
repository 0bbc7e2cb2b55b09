//go:build unix

package procs

import (
	"os"
	"syscall"
)

// killTree sends SIGKILL to p's process group (p leads it, see
// sysProcAttr) and to p itself.
func killTree(p *os.Process) {
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
}

// terminate sends SIGTERM to p.
func terminate(p *os.Process) {
	_ = p.Signal(syscall.SIGTERM)
}
