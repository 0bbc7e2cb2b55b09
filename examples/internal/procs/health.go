package procs

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Health polling intervals: short at first, so the time to healthy is
// measured closely, then backing off to keep the load negligible.
const (
	pollFirst = 10 * time.Millisecond
	pollMax   = 100 * time.Millisecond
	// pollRequestTimeout bounds one health request, so a hung server does
	// not eat the whole deadline in one poll.
	pollRequestTimeout = 2 * time.Second
)

// WaitHealthy polls url with GET until it returns 200 or ctx is done. The
// error names the last status or error seen. Set a deadline on ctx.
func WaitHealthy(ctx context.Context, url string) error {
	return waitHealthy(ctx, url, nil)
}

// waitHealthy is WaitHealthy that also gives up, returning ErrExited, when
// exited is closed.
func waitHealthy(ctx context.Context, url string, exited <-chan struct{}) error {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		Timeout:   pollRequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	last := "no answer yet"
	interval := pollFirst
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-exited: // first: a dead process is never healthy
			return ErrExited
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy at %s: %w (last: %s)", url, ctx.Err(), last)
		case <-exited:
			return ErrExited
		case <-timer.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("procs: health URL %q: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("status %d %q", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		timer.Reset(interval)
		interval = min(interval*2, pollMax)
	}
}
