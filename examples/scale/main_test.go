package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func TestLossLogged(t *testing.T) {
	dir := t.TempDir()
	killed := time.Date(2026, 12, 3, 14, 0, 31, 241_500_000, time.UTC)
	logs := map[string]string{
		"n01": `time=2026-12-03T14:00:21.868Z level=INFO msg="an owner is unreachable: not fully replicated" node=n01 peer=n03 err=x
time=2026-12-03T14:00:31.250Z level=INFO msg="tcp: dial failed" peer=127.0.0.1:1
time=2026-12-03T14:00:31.273Z level=INFO msg="an owner is unreachable: not fully replicated" node=n01 peer=n03 err=x
`,
		"n04": `time=2026-12-03T14:00:31.241Z level=INFO msg="an owner is unreachable: not fully replicated" node=n04 peer=n03 err=x
`,
		"n05": `time=2026-12-03T14:00:31.300Z level=INFO msg="an owner is unreachable: not fully replicated" node=n05 peer=n030 err=x
`,
	}
	for name, log := range logs {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".log"), []byte(log), 0o644))
	}
	latest, unlogged := lossLogged(dir, []string{"n01", "n04", "n05", "n06"}, "n03", killed)
	assert.Equal(t, 31500*time.Microsecond, latest, "n01's line after the kill, not its older one; n04's from the kill's millisecond")
	assert.Equal(t, 2, unlogged, "n05 logged another peer; n06 has no log")
}

// TestScale runs the smallest measurement end to end against real
// servers: it converges, measures, survives two SIGKILLs and logs nobody
// out.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs real processes")
	}
	var out bytes.Buffer
	code := mainExit([]string{"-nodes", "3", "-idle", "1s", "-in-use", "1s", "-quiet", "0s", "-busy", "2", "-users", "10"}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, 0, code)
	assert.Regexp(t, `\| 3 \| [0-9.]+m?s \| [0-9.]+s \| [0-9.]+% \| [0-9.]+% \| [0-9.]+ MiB \| [0-9]+ \| [0-9]+ \| 0 \| [0-9]+ \| .* \| [0-9.]+m?s, [0-9.]+m?s \| [^|]+, [^|]+ \| [0-9.]+m?s, [0-9.]+m?s \| [0-9.]+m?s, [0-9.]+m?s \| 0, 0 \|`, out.String())
}
