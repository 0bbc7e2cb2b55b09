package main

import (
	"bytes"
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
