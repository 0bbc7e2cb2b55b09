//go:build unix && !linux

package procs

import "syscall"

// sysProcAttr puts the child in its own process group, so a terminal's
// Ctrl-C reaches only the parent, which cleans up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
