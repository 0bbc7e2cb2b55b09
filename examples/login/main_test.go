package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(cleanupM{m}) }

// cleanupM removes the login binary the tests built, after the tests and
// before the leak check.
type cleanupM struct{ m *testing.M }

func (c cleanupM) Run() int {
	code := c.m.Run()
	if loginBin.dir != "" {
		_ = os.RemoveAll(loginBin.dir)
	}
	return code
}
