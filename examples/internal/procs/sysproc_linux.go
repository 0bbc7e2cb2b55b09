package procs

import "syscall"

// sysProcAttr puts the child in its own process group (so a terminal's
// Ctrl-C reaches only the parent, which cleans up) and has the kernel
// SIGKILL it when the parent dies (so a crashed parent leaks nothing).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
