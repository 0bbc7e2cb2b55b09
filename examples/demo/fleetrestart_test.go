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
)

func TestParseFlags_FleetRestart(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags([]string{"-scenario", "fleet-restart"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 3, c.nodes, "3 nodes by default")
	assert.Equal(t, time.Second, c.snapshotInterval)
	assert.Equal(t, []string{"-backups", "1"}, c.nodeArgs)
	d := newDemo(c, &stderr)
	d.logDir = "/logs"
	assert.Equal(t, []string{"-snapshot-dir", "/logs/snapshots/n1", "-snapshot-interval", "1s"}, d.snapshotArgs("n1"))

	_, err = parseFlags([]string{"-scenario", "fleet-restart", "-snapshot-interval", "0s"}, &stderr)
	require.Error(t, err)

	c, err = parseFlags(nil, &stderr)
	require.NoError(t, err)
	assert.Empty(t, newDemo(c, &stderr).snapshotArgs("n1"), "no snapshots in the other scenarios")
}

// TestDemoFleetRestart runs the fleet-restart scenario: three processes
// with a snapshot directory each, stopped all at once with SIGTERM and
// then with SIGKILL, restarted each time.
func TestDemoFleetRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs 3 processes")
	}
	logs := filepath.Join(t.TempDir(), "logs")
	logNodeLogsOnFailure(t, logs)
	var out bytes.Buffer
	code := mainExit([]string{"-scenario", "fleet-restart", "-users", "60", "-visits", "2", "-concurrency", "8",
		"-snapshot-interval", "500ms", "-logs", logs}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, exitOK, code)
	assert.Contains(t, out.String(), "PASS: 54 users stayed logged in and 6 stayed logged out through a SIGTERM and a SIGKILL of all 3 nodes at once")
	assert.Contains(t, out.String(), "failures      0")
	assert.Contains(t, out.String(), "SIGTERM of all 3: 54/54 sessions survived, 6/6 logouts stayed final")
	assert.Contains(t, out.String(), "SIGKILL of all 3: 54/54 sessions survived, 6/6 logouts stayed final")
	alone := 0 // nodes that found every peer leaving: at least the last to leave
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		log := string(b)
		assert.Equal(t, 3, strings.Count(log, "--- procs: "+n+" start #"), n)
		assert.Equal(t, 2, strings.Count(log, `msg="snapshot loaded"`), n)
		assert.NotContains(t, log, "snapshot refused", n)
		if strings.Contains(log, "no peer left to hand sessions over to: kept them in the snapshot") {
			alone++
		}
	}
	assert.Positive(t, alone, "no node found that every peer was leaving")
}
