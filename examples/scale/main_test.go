package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags([]string{"-nodes", "3, 8,64", "-node-args", "-timers lan"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, []int{3, 8, 64}, c.sizes)
	assert.Equal(t, []string{"-timers", "lan"}, c.nodeArgs)
	_, err = parseFlags([]string{"-nodes", "1"}, &stderr)
	require.Error(t, err)
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(strings.NewReader("# HELP x\nprocess_cpu_seconds_total 1.5\nsessionmesh_peers{state=\"ok\"} 2\nprocess_resident_memory_bytes 2.097152e+07\n"))
	assert.Equal(t, map[string]float64{"process_cpu_seconds_total": 1.5, "process_resident_memory_bytes": 20971520}, m)
}

// TestScale runs the smallest measurement end to end against real
// servers: it converges, measures, survives two SIGKILLs and logs nobody
// out.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs real processes")
	}
	var out bytes.Buffer
	code := mainExit([]string{"-nodes", "3", "-idle", "1s", "-quiet", "0s", "-busy", "2", "-users", "10"}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, 0, code)
	assert.Regexp(t, `\| 3 \| [0-9.]+m?s \| [0-9.]+s \| [0-9.]+% \| [0-9.]+% \| [0-9.]+ MiB \| [0-9]+ \| 0 \| [0-9]+ \| .* \| [0-9.]+m?s, [0-9.]+m?s \| [0-9.]+m?s, [0-9.]+m?s \| [0-9.]+m?s, [0-9.]+m?s \| 0, 0 \|`, out.String())
}
