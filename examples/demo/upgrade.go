package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
)

// previousRelease is the git revision of the previous release: the build
// whose nodes the upgrade scenario rolls to the current one and back. Any
// release must roll to the next one and back with zero logouts and zero
// failed requests (docs/upgrading.md); move it forward at each release.
const previousRelease = "c28045a894dd458c27d23f703a035d4ab044bc51"

// buildPrevious builds the login example of the -previous revision next to
// the current binary.
func (d *demo) buildPrevious(ctx context.Context, current string) (string, error) {
	bin := filepath.Join(filepath.Dir(current), "login-previous")
	ph := d.beginPhase("build examples/login of the previous release")
	d.printf("building %s at %s (the previous release)", procs.LoginPackage, d.cfg.previous)
	if err := procs.BuildRevision(ctx, d.cfg.previous, "./examples/login", bin); err != nil {
		return "", fmt.Errorf("%w\n(run the demo from inside a clone with its history, or pass -previous)", err)
	}
	ph.end()
	d.printf("built in %s", round(ph.dur))
	return bin, nil
}

// runUpgrade is the upgrade scenario: the nodes start on the previous
// release; each in turn is stopped gracefully and started on the current
// build, then each is rolled back to the previous release, while every user
// keeps visiting through the proxy. No user may be logged out, no
// acknowledged visit lost and no request fail, in either direction.
func (d *demo) runUpgrade(ctx context.Context) error {
	if ok, err := d.beforeRoll(ctx); !ok {
		return err
	}
	var steps []rollStep
	for _, n := range d.nodes {
		steps = append(steps, rollStep{node: n, bin: d.currentBin})
	}
	for _, n := range d.nodes {
		steps = append(steps, rollStep{node: n, bin: d.previousBin})
	}
	return d.roll(ctx, fmt.Sprintf("rolling upgrade of %d nodes from the previous release to this build and back (%%d restarts)", len(d.nodes)), steps, true)
}
