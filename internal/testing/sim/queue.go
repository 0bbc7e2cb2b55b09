package sim

import (
	"container/heap"
	"time"
)

// queue is the driver's agenda: actions due at offsets from the start of
// the history, run one at a time on the driver goroutine, in time order
// and, at equal times, in the order they were added. Only the driver adds
// to it with at and after; other goroutines hand it work with post.
type queue struct {
	start time.Time
	h     actions
	seq   int
	inbox chan func()
	// afterEach, when set, runs after every action.
	afterEach func()
}

type action struct {
	at  time.Duration
	seq int
	do  func()
}

type actions []action

func (a actions) Len() int { return len(a) }
func (a actions) Less(i, j int) bool {
	if a[i].at != a[j].at {
		return a[i].at < a[j].at
	}
	return a[i].seq < a[j].seq
}
func (a actions) Swap(i, j int) { a[i], a[j] = a[j], a[i] }
func (a *actions) Push(x any)   { *a = append(*a, x.(action)) }
func (a *actions) Pop() any {
	old := *a
	x := old[len(old)-1]
	*a = old[:len(old)-1]
	return x
}

// newQueue returns an empty agenda starting now. It must be created
// inside the history's bubble.
func newQueue() *queue {
	return &queue{start: time.Now(), inbox: make(chan func(), 64)}
}

// rebase makes now the start of the history. The agenda must be empty.
func (q *queue) rebase() { q.start = time.Now() }

// at schedules do at offset t (at once if t has passed).
func (q *queue) at(t time.Duration, do func()) {
	q.seq++
	heap.Push(&q.h, action{at: t, seq: q.seq, do: do})
}

// after schedules do d from now.
func (q *queue) after(d time.Duration, do func()) { q.at(time.Since(q.start)+d, do) }

// post hands do to the driver from another goroutine; it runs before the
// next due action. It does not block while fewer than 64 are waiting.
func (q *queue) post(do func()) { q.inbox <- do }

// runUntil runs the actions due up to offset end, sleeping in virtual
// time between them, and returns at end.
func (q *queue) runUntil(end time.Duration) {
	for {
		now := time.Since(q.start)
		if len(q.h) > 0 && q.h[0].at <= now {
			q.do(heap.Pop(&q.h).(action).do)
			continue
		}
		select {
		case do := <-q.inbox:
			q.do(do)
			continue
		default:
		}
		if now >= end {
			return
		}
		next := end
		if len(q.h) > 0 {
			next = min(next, q.h[0].at)
		}
		t := time.NewTimer(next - now)
		select {
		case <-t.C:
		case do := <-q.inbox:
			t.Stop()
			q.do(do)
		}
	}
}

func (q *queue) do(fn func()) {
	fn()
	if q.afterEach != nil {
		q.afterEach()
	}
}
