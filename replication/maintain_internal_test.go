package replication

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The pause between maintenance rounds: short while re-replication makes
// progress, then doubling up to AntiEntropyInterval when it stalls, and the
// normal pace once fully replicated.
func TestRoundPeriod_CatchesUpThenBacksOff(t *testing.T) {
	s := &Store{cfg: Config{AntiEntropyInterval: 5 * time.Second}}
	next := func(under int32) time.Duration {
		s.replicated.Store(under)
		return s.roundPeriod()
	}
	assert.Equal(t, 5*time.Second, next(0), "fully replicated: the normal pace")
	assert.Equal(t, catchUpInterval, next(-1), "a view change")
	assert.Equal(t, catchUpInterval, next(40), "counted after it")
	for i := range catchUpRounds - 2 {
		assert.Equal(t, catchUpInterval, next(40), "stalled round %d", i)
	}
	var stalled []time.Duration
	for range 7 {
		stalled = append(stalled, next(40))
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms}, stalled,
		"after catchUpRounds without progress the pause doubles up to AntiEntropyInterval")
	assert.Equal(t, catchUpInterval, next(39), "progress: short pauses again")
	assert.Equal(t, 5*time.Second, next(0))
	assert.Equal(t, catchUpInterval, next(3), "a new loss")
}
