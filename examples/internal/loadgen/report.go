package loadgen

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// FormatDuration prints d with three significant digits in the unit that
// suits it: "870ns", "64.2µs", "1.25ms", "2.31s".
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	default:
		return sig3(d.Seconds()) + "s"
	}
}

// sig3 formats v (1 <= v < 1000) with three significant digits.
func sig3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// Percentiles returns "p50 X  p90 X  p99 X  max X" for h.
func Percentiles(h *Histogram) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s",
		FormatDuration(h.Quantile(0.50)), FormatDuration(h.Quantile(0.90)),
		FormatDuration(h.Quantile(0.99)), FormatDuration(h.Max()))
}

// WriteText writes a human-readable summary of r to w.
func (r *Result) WriteText(w io.Writer) error {
	c := r.Config
	ew := &ErrWriter{W: w}
	ew.Printf("%s against %s: %d users, %d in flight, %s measured after %s warm-up\n",
		c.Mix.Name, strings.Join(append([]string{c.BaseURL}, c.MoreURLs...), " + "), c.Users, c.Concurrency,
		r.Elapsed.Round(time.Millisecond), c.Warmup)
	ew.Printf("  requests/s %.0f  requests %d  errors %d  mismatches %d\n",
		r.RequestsPerSecond(), r.Total.Requests, r.Total.Errors, r.Total.Mismatches)
	ew.Printf("  latency    %s\n", Percentiles(&r.Total.Latency))
	ops := make([]string, 0, len(r.Ops))
	for op := range r.Ops {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		s := r.Ops[op]
		ew.Printf("  %-12s %8d requests  %s  errors %d  mismatches %d\n",
			op, s.Requests, Percentiles(&s.Latency), s.Errors, s.Mismatches)
	}
	ew.Printf("  initial logins: %d, %s, errors %d\n", r.Logins.Requests, Percentiles(&r.Logins.Latency), r.Logins.Errors)
	for _, e := range r.ErrorSamples {
		ew.Printf("  error: %s\n", e)
	}
	return ew.Err
}

// ErrWriter writes formatted text to W until a write fails, and keeps
// that first error, so a report can be written without checking each
// line.
type ErrWriter struct {
	W   io.Writer
	Err error
}

// Printf writes to W unless an earlier write failed.
func (e *ErrWriter) Printf(format string, args ...any) {
	if e.Err == nil {
		_, e.Err = fmt.Fprintf(e.W, format, args...)
	}
}
