//go:build !unix

package procs

import (
	"os"
	"syscall"
)

// sysProcAttr has no process group support here.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killTree kills p; there is no process group to kill here.
func killTree(p *os.Process) { _ = p.Kill() }

// terminate kills p: there is no SIGTERM here, so Stop is as abrupt as Kill.
func terminate(p *os.Process) { _ = p.Kill() }
