package throttle_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/throttle"
)

// BenchmarkLimiter_Allow measures Allow on node a of three over loopback
// TCP (all-to-all): counting an existing key, creating a key's window, and
// refusing a key over its limit. examples/throttlebench compares the same
// with Redis.
func BenchmarkLimiter_Allow(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{TCP: true})
	a := c.Start("a")
	c.Start("b")
	c.Start("c")
	c.WaitReady(b)
	ctx := context.Background()
	newLimiter := func(name string, limit int) *throttle.Limiter {
		l, err := throttle.New(a.Store, limit, time.Hour, throttle.Options{Name: name, MaxKeys: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	run := func(b *testing.B, l *throttle.Limiter, key func(i int) string, want bool) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ok, _, err := l.Allow(ctx, key(i))
			if err != nil || ok != want {
				b.Fatalf("call %d: %v, %v", i, ok, err)
			}
			i++
		}
	}
	b.Run("counted", func(b *testing.B) {
		l := newLimiter("counted", 1<<40)
		run(b, l, func(i int) string { return "k" + strconv.Itoa(i%100) }, true)
	})
	b.Run("new key", func(b *testing.B) {
		l := newLimiter("new-"+strconv.Itoa(b.N), 1<<40)
		run(b, l, func(i int) string { return "k" + strconv.Itoa(i) }, true)
	})
	b.Run("refused", func(b *testing.B) {
		l := newLimiter("refused", 1)
		if ok, _, err := l.Allow(ctx, "victim"); !ok || err != nil {
			b.Fatal(ok, err)
		}
		run(b, l, func(int) string { return "victim" }, false)
	})
}
