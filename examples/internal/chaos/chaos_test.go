package chaos

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Environment variables that scale the chaos test up from its CI size.
const (
	// envDuration sets how long faults are injected, such as "30m".
	envDuration = "SESSIONMESH_CHAOS_DURATION"
	// envSeed sets the seed ("random" for a new one each run).
	envSeed = "SESSIONMESH_CHAOS_SEED"
	// envKinds sets the fault kinds, as the command's -kinds flag.
	envKinds = "SESSIONMESH_CHAOS_KINDS"
	// envLogs keeps the node logs in a directory of the caller's.
	envLogs = "SESSIONMESH_CHAOS_LOGS"
)

// ciDuration is how long the CI-sized run injects faults: with the build,
// the warm-up and the final checks the test takes about 1.5 minutes.
const ciDuration = 60 * time.Second

// ciSeed is the seed of the CI-sized run, so CI runs the same schedule
// every time (SESSIONMESH_CHAOS_SEED=random explores).
const ciSeed = 1

// TestChaos is the CI-sized chaos run: 5 real login servers with backups
// 1 behind the round-robin proxy, 200 users, one fault at a time with
// recovery between, then the final checks and the soak bounds. It must
// find no anomaly. Longer runs: SESSIONMESH_CHAOS_DURATION=30m.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs 5 processes for about 1.5 minutes")
	}
	cfg := testConfig(t)
	rep := runChaos(t, cfg)
	assert.True(t, rep.OK(), "%d anomalies (seed %d): see the report above", len(rep.Anomalies), rep.Seed)
	assert.NotEmpty(t, rep.Injected(), "no fault was injected")
	assert.Zero(t, rep.ErrorsOutsideFailover, "errors while no fault was in progress")
	for _, f := range rep.Faults {
		assert.Empty(t, f.Failed, "fault #%d", f.Index)
	}
	judged := false
	for _, s := range rep.Soak {
		if s.Node == "n1" && s.Judged {
			judged = true
		}
	}
	assert.True(t, judged, "the soak observer n1 had too few samples to judge")
}

// testConfig is the CI-sized configuration, scaled by the environment. It
// injects every kind of fault; the network faults need root (network
// namespaces) and are skipped with a message without it.
func testConfig(t *testing.T) Config {
	cfg := Config{
		Nodes: 5, Backups: 1, Users: 200, Concurrency: 16, Rate: 200,
		Duration: ciDuration, Seed: ciSeed,
		// Fewer samples suffice for the short run's soak verdict on n1.
		Soak: SoakLimits{MinSamples: 5},
	}
	if s := os.Getenv(envDuration); s != "" {
		d, err := time.ParseDuration(s)
		require.NoError(t, err, envDuration)
		cfg.Duration = d
	}
	switch s := os.Getenv(envSeed); s {
	case "":
	case "random":
		cfg.Seed = 0
	default:
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, envSeed)
		cfg.Seed = seed
	}
	if s := os.Getenv(envKinds); s != "" {
		k, err := ParseKinds(s)
		require.NoError(t, err, envKinds)
		cfg.Kinds = k
	}
	cfg.LogDir = os.Getenv(envLogs)
	return cfg
}

// runChaos runs cfg, logging the progress and the report.
func runChaos(t *testing.T, cfg Config) *Report {
	var out bytes.Buffer
	cfg.Out = &testWriter{t: t}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+10*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, rep.WriteText(&out))
	t.Log("\n" + out.String())
	return rep
}

// testWriter sends progress lines to t.Log as they come, so a long run
// shows its progress with -v.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
