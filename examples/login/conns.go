package main

import (
	"net"
	"net/http"
	"sync"
)

// unusedConns tracks the HTTP connections that have not sent a byte of a
// request yet, so that a graceful exit can close them: http.Server.Shutdown
// waits for such a connection until it is 5 s old, and a proxy in front
// may dial one just before the stop and never use it.
type unusedConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{} // guards: connections in http.StateNew
}

// track is the server's ConnState hook.
func (u *unusedConns) track(c net.Conn, st http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if st != http.StateNew {
		delete(u.conns, c)
		return
	}
	if u.conns == nil {
		u.conns = make(map[net.Conn]struct{})
	}
	u.conns[c] = struct{}{}
}

// closeAll closes every connection that has not sent a request; the
// server calls it on Shutdown, once its listener is closed.
func (u *unusedConns) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c := range u.conns {
		_ = c.Close()
	}
}
