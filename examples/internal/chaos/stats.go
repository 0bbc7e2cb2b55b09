package chaos

import (
	"fmt"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
)

// runStats counts every request of the run.
type runStats struct {
	requests, answered, errors int64
	errorsOutside              int64 // failed requests sent between faults
	timeouts                   int64
	byOp                       map[Op]int64 // requests answered 200, by operation
	hist                       *loadgen.Histogram
}

func (s *runStats) add(e *Event) {
	if s.byOp == nil {
		s.byOp, s.hist = map[Op]int64{}, loadgen.NewHistogram()
	}
	s.requests++
	s.hist.Record(e.Took)
	if e.Err != "" {
		s.errors++
	} else {
		s.answered++
		if e.Status == 200 {
			s.byOp[e.Op]++
		}
	}
	if e.TimedOut {
		s.timeouts++
	}
}

// faultStats counts the requests sent while one fault was injected or
// recovered from.
type faultStats struct {
	requests, errors, slow, anomalies int64
	hist                              *loadgen.Histogram
	lastBad                           time.Time // when the last failed, 401 or slow answer came
	errKinds                          map[string]int
}

func (f *faultStats) add(e *Event, bad bool, slow time.Duration) {
	f.requests++
	f.hist.Record(e.Took)
	if e.Err != "" {
		f.errors++
		f.errKinds[errorKind(e)]++
	}
	if e.Took > slow {
		f.slow++
	}
	if end := e.Sent.Add(e.Took); bad && end.After(f.lastBad) {
		f.lastBad = end
	}
}

// errorKind sums up a failed request for the error counts.
func errorKind(e *Event) string {
	msg := e.Err
	if e.Status == 0 {
		if _, after, ok := strings.Cut(msg, `": `); ok { // drop `Post "http://...": `
			msg = after
		}
		return "no answer: " + truncate(msg, 80)
	}
	if _, after, ok := strings.Cut(msg, ": "); ok {
		msg = after
	}
	from := "from " + cmpOr(e.AnsweredBy, "the proxy")
	if strings.HasPrefix(msg, "rrproxy: 502") {
		msg = "no node answered"
	}
	return fmt.Sprintf("%d %s: %s", e.Status, from, truncate(msg, 80))
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
