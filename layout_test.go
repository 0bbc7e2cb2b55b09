package sessionmesh_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/sessionmesh/sessionmesh"

// pkg is what go list says of one package of the library module.
type pkg struct {
	ImportPath string
	Imports    []string // direct imports, tests excluded
	Deps       []string // transitive imports, tests excluded
}

// libraryPackages lists the library module's packages (not the examples,
// which are a module of their own).
func libraryPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Env = append(cmd.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", out)
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
		pkgs[p.ImportPath] = p
	}
	require.Contains(t, pkgs, module+"/replication")
	return pkgs
}

// ours returns the packages of this module among paths, without the module
// prefix ("" for the root package).
func ours(paths []string) []string {
	var out []string
	for _, p := range paths {
		if p == module {
			out = append(out, "")
		} else if rest, ok := strings.CutPrefix(p, module+"/"); ok {
			out = append(out, rest)
		}
	}
	return out
}

// isLeaf reports whether p is an internal package that library packages
// may share (not a test harness).
func isLeaf(p string) bool {
	return strings.HasPrefix(p, "internal/") && !strings.HasPrefix(p, "internal/testing/")
}

// TestLayout_ImportFloors checks the package floors of docs/architecture.md:
// which packages may import which. The compiler forbids cycles; this test
// forbids the imports that would blur a floor.
func TestLayout_ImportFloors(t *testing.T) {
	pkgs := libraryPackages(t)
	dep := func(path string) []string { return pkgs[module+"/"+path].Deps }
	has := func(deps []string, p string) bool {
		for _, d := range deps {
			if d == p || strings.HasPrefix(d, p+"/") {
				return true
			}
		}
		return false
	}

	for _, p := range []string{"transport", "transport/tcp", "cluster"} {
		for _, d := range ours(dep(p)) {
			ok := isLeaf(d) || (p == "transport/tcp" && d == "transport")
			require.True(t, ok, "%s imports %q: it may import only internal leaves", p, d)
		}
	}
	require.Empty(t, ours(dep("transport")), "transport is a leaf")

	for _, forbidden := range []string{module + "/cluster", module + "/transport/tcp", module + "/httpsession", "github.com/hashicorp/memberlist"} {
		require.False(t, has(dep("replication"), forbidden), "replication depends on %s", forbidden)
	}
	require.NotContains(t, ours(dep("replication")), "", "replication depends on the root package")

	for path, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
		if !strings.HasPrefix(rel, "httpsession") {
			continue
		}
		for _, forbidden := range []string{module + "/transport", module + "/cluster"} {
			require.NotContains(t, p.Imports, forbidden, "%s imports %s", path, forbidden)
		}
		for _, forbidden := range []string{module + "/transport/tcp", module + "/cluster", "github.com/hashicorp/memberlist"} {
			require.False(t, has(p.Deps, forbidden), "%s depends on %s", path, forbidden)
		}
	}

	// throttle sits beside httpsession: on the store alone.
	for _, d := range ours(pkgs[module+"/throttle"].Imports) {
		require.True(t, isLeaf(d) || d == "replication", "throttle imports %q: it may import only replication and internal leaves", d)
	}
	for _, forbidden := range []string{module + "/cluster", module + "/transport/tcp", module + "/httpsession", "github.com/hashicorp/memberlist"} {
		require.False(t, has(dep("throttle"), forbidden), "throttle depends on %s", forbidden)
	}

	for path, p := range pkgs {
		if strings.HasPrefix(path, module+"/internal/testing/") {
			continue // harnesses may use each other
		}
		for _, d := range ours(p.Deps) {
			require.False(t, strings.HasPrefix(d, "internal/testing/") || strings.HasPrefix(d, "examples/"),
				"%s imports the harness %s outside its tests", path, d)
		}
	}
}

// TestLayout_LeanModule checks that the library's module graph holds no
// dependency that only the examples need.
func TestLayout_LeanModule(t *testing.T) {
	cmd := exec.Command("go", "list", "-m", "all")
	cmd.Env = append(cmd.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	require.NoError(t, err)
	for _, m := range []string{"github.com/chromedp/", "github.com/gomodule/redigo", "github.com/alexedwards/scs/redisstore", "github.com/redis/go-redis"} {
		require.NotContains(t, string(out), m, "the library module requires %s", m)
	}
}
