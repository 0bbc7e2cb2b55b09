package procs

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Network selects which protocols a port from FreePorts must be free for.
type Network int

const (
	// TCP asks for ports free for TCP (HTTP servers, replication).
	TCP Network = iota + 1
	// TCPAndUDP asks for ports free for both TCP and UDP, as a gossip
	// (memberlist) bind address needs.
	TCPAndUDP
)

// lowestPort is the smallest port FreePorts picks when it chooses itself.
const lowestPort = 10000

// FreePorts returns n distinct ports on host (an IP address; "" means
// 127.0.0.1) that are free now for network. It binds each port, holding
// all of them until the n are found, then releases them, so the caller
// should bind them soon.
//
// Where the kernel tells its ephemeral port range (Linux), the ports are
// picked at random below that range: outgoing connections never take those,
// so a process that is killed and restarted on its old ports finds them
// free. Elsewhere the kernel picks them.
func FreePorts(host string, n int, network Network) ([]int, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	if network != TCP && network != TCPAndUDP {
		return nil, fmt.Errorf("procs: unknown network %d", network)
	}
	low, high := pickRange()
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for attempt := 0; len(ports) < n; attempt++ {
		if attempt > 200+20*n {
			return nil, errors.New("procs: no free port found")
		}
		port := 0
		if high > low {
			port = low + rand.IntN(high-low)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		port = ln.Addr().(*net.TCPAddr).Port
		if network == TCPAndUDP {
			pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				ln.Close()
				continue
			}
			held = append(held, pc)
		}
		held = append(held, ln)
		ports = append(ports, port)
	}
	return ports, nil
}

// FreeAddrs is FreePorts returning "host:port" addresses.
func FreeAddrs(host string, n int, network Network) ([]string, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	ports, err := FreePorts(host, n, network)
	if err != nil {
		return nil, err
	}
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return addrs, nil
}

// pickRange returns [low, high) to pick ports from, or (0, 0) to let the
// kernel pick.
func pickRange() (low, high int) {
	if runtime.GOOS != "linux" {
		return 0, 0
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	ephemeralLow, err := strconv.Atoi(f[0])
	if err != nil || ephemeralLow-lowestPort < 1000 {
		return 0, 0
	}
	return lowestPort, ephemeralLow
}
