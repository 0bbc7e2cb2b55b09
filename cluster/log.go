package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"sync/atomic"
)

// newMemberlistLogger returns a *log.Logger for memberlist whose lines go to
// logger at the level of their prefix. Once closed is set, every line is
// logged at debug level: memberlist's goroutines that outlive its Shutdown
// (a probe in flight) report errors of the closed sockets, such as
// "Failed to send indirect UDP ping: use of closed network connection" and
// "Was able to connect to x over TCP but UDP probes failed", which mean
// nothing after Close. closed may be nil.
func newMemberlistLogger(logger *slog.Logger, closed *atomic.Bool) *log.Logger {
	return log.New(logBridge{logger: logger.With("component", "memberlist"), closed: closed}, "", 0)
}

// logBridge is the io.Writer under memberlist's *log.Logger. memberlist
// writes one line per call, such as
//
//	[WARN] memberlist: Refuting a suspect message (from: b)
//
// and logBridge logs "Refuting a suspect message (from: b)" at slog's
// LevelWarn. Lines without a known prefix are logged at LevelInfo.
type logBridge struct {
	logger *slog.Logger
	closed *atomic.Bool
}

func (w logBridge) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(p)
	if w.closed != nil && w.closed.Load() {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if w.logger.Enabled(ctx, level) {
		w.logger.Log(ctx, level, string(msg))
	}
	return len(p), nil
}

// parseMemberlistLine splits a memberlist log line into its level and its
// message without the level tag, the "memberlist: " prefix and the newline.
func parseMemberlistLine(p []byte) (slog.Level, []byte) {
	p = bytes.TrimRight(p, "\r\n")
	level := slog.LevelInfo
	if len(p) > 0 && p[0] == '[' {
		if end := bytes.IndexByte(p, ']'); end > 0 {
			known := true
			switch string(p[1:end]) {
			case "DEBUG", "TRACE":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				known = false
			}
			if known {
				p = bytes.TrimLeft(p[end+1:], " ")
			}
		}
	}
	p = bytes.TrimPrefix(p, []byte("memberlist: "))
	return level, p
}
