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

// BuildRevision compiles the Go package pkg as it was at the git revision
// rev of the repository around the working directory, into the executable
// out: the previous release of a server, for an upgrade test. The tree of
// rev is exported with `git archive` into a temporary directory and built
// there with its own go.mod and go.sum (and without the current go.work),
// so the binary is what that release's users run. pkg is an import path or
// a path relative to the repository root, such as ./examples/login.
func BuildRevision(ctx context.Context, rev, pkg, out string, flags ...string) error {
	top, err := gitOutput(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("procs: build %s at %s: find the repository: %w", pkg, rev, err)
	}
	if _, err := gitOutput(ctx, top, "cat-file", "-e", rev+"^{commit}"); err != nil {
		return fmt.Errorf("procs: build %s at %s: no such commit in %s (a shallow clone? fetch the history): %w", pkg, rev, top, err)
	}
	dir, err := os.MkdirTemp("", "sessionmesh-rev-")
	if err != nil {
		return fmt.Errorf("procs: build %s at %s: %w", pkg, rev, err)
	}
	defer os.RemoveAll(dir)
	tarball := filepath.Join(dir, "tree.tar")
	if _, err := gitOutput(ctx, top, "archive", "--format=tar", "-o", tarball, rev); err != nil {
		return fmt.Errorf("procs: build %s at %s: %w", pkg, rev, err)
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return fmt.Errorf("procs: build %s at %s: %w", pkg, rev, err)
	}
	untar := exec.CommandContext(ctx, "tar", "-xf", tarball, "-C", src)
	if output, err := untar.CombinedOutput(); err != nil {
		return fmt.Errorf("procs: build %s at %s: tar: %w\n%s", pkg, rev, err, output)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("procs: build %s at %s: %w", pkg, rev, err)
	}
	modDir, pkg := moduleOf(src, pkg)
	args := append([]string{"build", "-o", abs}, flags...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, goCommand(), args...)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("procs: go %s (at %s): %w\n%s", strings.Join(args, " "), rev, err, output.String())
	}
	return nil
}

// moduleOf returns the directory of the module in the tree root that holds
// the package at the relative path pkg ("./a/b"), and pkg relative to it:
// a package of a nested module builds only from inside that module. Import
// paths are left to the root module.
func moduleOf(root, pkg string) (dir, rel string) {
	if !strings.HasPrefix(pkg, "./") {
		return root, pkg
	}
	for d := filepath.Join(root, pkg); strings.HasPrefix(d, root) && d != root; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			r, err := filepath.Rel(d, filepath.Join(root, pkg))
			if err != nil {
				break
			}
			return d, "./" + filepath.ToSlash(r)
		}
	}
	return root, pkg
}

// gitOutput runs git in dir (the working directory when empty) and returns
// its trimmed standard output.
func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}
