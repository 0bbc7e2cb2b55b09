package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sessionmesh/sessionmesh/examples/internal/chaos"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, only, err := parseFlags(nil, &stderr)
	require.NoError(t, err)
	assert.False(t, only)
	assert.Equal(t, 5, c.Nodes)
	assert.Equal(t, 1, c.Backups)
	assert.Equal(t, 2*time.Minute, c.Duration)
	assert.Equal(t, chaos.AllKinds, c.Kinds)
	assert.Equal(t, []string{"n1"}, c.Protect)
	assert.Equal(t, chaos.NetworkAuto, c.Network)

	c, only, err = parseFlags([]string{"-seed", "7", "-kinds", "kill,term", "-protect", "", "-node-args", "-log-level debug", "-schedule-only"}, &stderr)
	require.NoError(t, err)
	assert.True(t, only)
	assert.Equal(t, uint64(7), c.Seed)
	assert.Equal(t, []chaos.FaultKind{chaos.Kill, chaos.Term}, c.Kinds)
	assert.Empty(t, c.Protect)
	assert.Equal(t, []string{"-log-level", "debug"}, c.NodeArgs)

	for _, bad := range [][]string{{"-kinds", "nope"}, {"extra"}, {"-nodes", "x"}} {
		_, _, err := parseFlags(bad, &stderr)
		assert.Error(t, err, bad)
	}
}

func TestScheduleOnly(t *testing.T) {
	var out, errOut bytes.Buffer
	code := mainExit([]string{"-seed", "42", "-schedule-only", "-faults", "3"}, &out, &errOut)
	require.Equal(t, exitOK, code, errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, "#1 loss n3: 27% packet loss to and from every other node for 5s; pause 2.3s", lines[0])

	var again bytes.Buffer
	mainExit([]string{"-seed", "42", "-schedule-only", "-faults", "3"}, &again, &errOut)
	assert.Equal(t, out.String(), again.String(), "the same seed gives the same schedule")

	assert.Equal(t, exitUsage, mainExit([]string{"-schedule-only"}, &out, &errOut), "needs a seed")
	assert.Equal(t, exitUsage, mainExit([]string{"-nodes", "1", "-seed", "1", "-schedule-only"}, &out, &errOut))
}
