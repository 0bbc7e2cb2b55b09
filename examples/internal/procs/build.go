package procs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// LoginPackage is the import path of the login example that the demo, the
// multi-process tests and the load generator run.
const LoginPackage = "github.com/sessionmesh/sessionmesh/examples/login"

// Build compiles the Go package pkg (an import path, or a relative path
// such as ./examples/login) into the executable out, with `go build`. flags
// go before the package, for example "-race". The working directory must
// be inside the module, as for any go command; an import path works from
// anywhere in it. The error carries the compiler's output.
func Build(ctx context.Context, pkg, out string, flags ...string) error {
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goCommand(), args...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("procs: go %s: %w\n%s", strings.Join(args, " "), err, output.String())
	}
	return nil
}

// goCommand returns the go command: the one on PATH, else $GOROOT/bin/go.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}
