package replication

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// vanish returns the vanished members called names, each at address name.
func vanish(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = n
	}
	return m
}

func TestMinorityWatch(t *testing.T) {
	const s = int64(time.Second)
	five := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		name  string
		steps func(w *minorityWatch) int64 // returns the last viewChanged's answer
		want  int64
	}{
		{"a node joining members", func(w *minorityWatch) int64 {
			w.viewChanged(0, []string{"a"}, nil)
			return w.viewChanged(1, five, nil)
		}, 0},
		{"cut off alone from four", func(w *minorityWatch) int64 {
			w.viewChanged(0, five, nil)
			w.viewChanged(1*s, []string{"a", "c", "d", "e"}, vanish("b"))
			return w.viewChanged(2*s, []string{"a"}, vanish("c", "d", "e"))
		}, 32 * s}, // until c's, d's and e's memories have gone (b's at 31 s leaves three)
		{"two of five crashed", func(w *minorityWatch) int64 {
			return w.viewChanged(1*s, []string{"a", "b", "c"}, vanish("d", "e"))
		}, 0},
		{"three of five crashed", func(w *minorityWatch) int64 {
			return w.viewChanged(1*s, []string{"a", "b"}, vanish("c", "d", "e"))
		}, 31 * s},
		{"the survivor of two", func(w *minorityWatch) int64 {
			return w.viewChanged(1*s, []string{"a"}, vanish("b"))
		}, 0},
		{"a member back under a new incarnation counts at once", func(w *minorityWatch) int64 {
			w.viewChanged(1*s, []string{"a"}, vanish("b", "c", "d", "e"))
			return w.viewChanged(2*s, []string{"a", "e"}, nil) // e restarted and joined a first
		}, 31 * s},
		{"the rest back", func(w *minorityWatch) int64 {
			w.viewChanged(1*s, []string{"a"}, vanish("b", "c", "d", "e"))
			return w.viewChanged(2*s, five, nil)
		}, 0},
		{"forgotten after the hold", func(w *minorityWatch) int64 {
			w.viewChanged(1*s, []string{"a", "b"}, vanish("c", "d", "e"))
			return w.viewChanged(32*s, []string{"a", "b"}, nil)
		}, 0},
		{"memories end one by one", func(w *minorityWatch) int64 {
			w.viewChanged(1*s, []string{"a", "b", "c"}, vanish("d"))
			w.viewChanged(10*s, []string{"a", "b"}, vanish("c"))
			return w.viewChanged(20*s, []string{"a"}, vanish("b"))
		}, 40 * s}, // d forgotten at 31 s, c at 40 s: then one of one vanished
		{"vanished members found gone do not count", func(w *minorityWatch) int64 {
			w.viewChanged(1*s, []string{"a", "b"}, vanish("c", "d", "e"))
			return w.gone("d")
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.steps(newMinorityWatch(30*time.Second)))
		})
	}
	off := newMinorityWatch(-1)
	assert.Zero(t, off.viewChanged(1*s, []string{"a"}, vanish("b", "c", "d", "e")), "MinorityHold negative: off")
}
