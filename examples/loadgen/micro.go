package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// microPackages are the packages whose benchmarks the comparison runs.
var microPackages = []string{
	"github.com/sessionmesh/sessionmesh/replication",
	"github.com/sessionmesh/sessionmesh/httpsession",
}

// benchResult is one line of go test -bench output.
type benchResult struct {
	name    string             // without the GOMAXPROCS suffix: "BenchmarkLocalRead/store"
	n       int64              // iterations
	metrics map[string]float64 // by unit: "ns/op", "B/op", "allocs/op", "MB/s", "p50-ns", ...
	units   []string           // the units in the order printed
}

// metric returns the value of unit, and whether it was reported.
func (b *benchResult) metric(unit string) (float64, bool) {
	if b == nil {
		return 0, false
	}
	v, ok := b.metrics[unit]
	return v, ok
}

// runMicro runs the micro-benchmarks, echoing their output to out, and
// returns the output and the parsed results.
func runMicro(ctx context.Context, benchtime string, out io.Writer) (string, []benchResult, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchtime", benchtime, "-count", "1"}, microPackages...)
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout = io.MultiWriter(&buf, out)
	cmd.Stderr = cmd.Stdout
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return buf.String(), parseBench(buf.String(), runtime.GOMAXPROCS(0)), err
}

// parseBench parses the result lines of go test -bench output. procs is
// the GOMAXPROCS of the run, whose "-N" suffix (absent for 1) is removed
// from the names.
func parseBench(output string, procs int) []benchResult {
	suffix := ""
	if procs > 1 {
		suffix = "-" + strconv.Itoa(procs)
	}
	var out []benchResult
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		r := benchResult{name: strings.TrimSuffix(f[0], suffix), n: n, metrics: map[string]float64{}}
		valid := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				valid = false
				break
			}
			r.metrics[f[i+1]] = v
			r.units = append(r.units, f[i+1])
		}
		if valid {
			out = append(out, r)
		}
	}
	return out
}

// findBench returns the result called name, or nil.
func findBench(rs []benchResult, name string) *benchResult {
	for i := range rs {
		if rs[i].name == name {
			return &rs[i]
		}
	}
	return nil
}
