//go:build !unix

package main

import "time"

// selfCPU is not implemented here: CPU accounting needs Unix.
func selfCPU() (time.Duration, bool) { return 0, false }
