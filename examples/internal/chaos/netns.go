package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Names of what a lab creates. Each embeds the process ID of the harness
// that created it, so that a later run can remove what a killed harness
// left behind (see sweepStale) without touching the labs of harnesses that
// still run.
const (
	nsPrefix     = "smc-"   // network namespaces: smc-<pid>-<node>
	bridgePrefix = "smcb"   // the bridge: smcb<pid>
	vethPrefix   = "smc"    // host ends of the veth pairs: smc<pid>v<i>
	subnetBase   = "10.213" // lab subnets: 10.213.<x>.0/24
)

// labCommandTimeout bounds each ip or nft command.
const labCommandTimeout = 10 * time.Second

// lab is a virtual network on this host: one network namespace per node,
// each with one veth interface plugged into a bridge in the harness's
// namespace, and an nftables table on the bridge that the network faults
// fill. The harness (load balancer, users, health polls) reaches every
// node over the bridge from the host's address; nodes reach each other
// through the bridge, and only that forwarded traffic is ever filtered.
type lab struct {
	pid     int
	ip, nft string // paths of the ip and nft commands
	bridge  string
	table   string            // the nftables bridge table the faults fill
	hostIP  string            // the bridge's address, in the harness's namespace
	nodeIP  map[string]string // by node name
	ns      map[string]string // namespace by node name
	created []func() error    // undo steps, in creation order
}

// newLab builds the lab for the named nodes, or explains why it cannot
// (not root, a command missing, the kernel refusing). On failure it
// removes whatever it had created.
func newLab(ctx context.Context, names []string) (_ *lab, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("network namespaces need root")
	}
	l := &lab{pid: os.Getpid(), nodeIP: map[string]string{}, ns: map[string]string{}}
	if l.ip, err = exec.LookPath("ip"); err != nil {
		return nil, errors.New("the ip command (iproute2) is not installed")
	}
	if l.nft, err = exec.LookPath("nft"); err != nil {
		return nil, errors.New("the nft command (nftables) is not installed")
	}
	l.sweepStale(ctx)
	defer func() {
		if err != nil {
			_ = l.close()
		}
	}()
	subnet, err := l.freeSubnet(ctx)
	if err != nil {
		return nil, err
	}
	l.bridge = bridgePrefix + strconv.Itoa(l.pid)
	l.hostIP = subnet + ".1"
	if err := l.run(ctx, "link", "add", l.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	l.created = append(l.created, func() error { return l.run(context.Background(), "link", "del", l.bridge) })
	for _, args := range [][]string{
		{"addr", "add", l.hostIP + "/24", "dev", l.bridge},
		{"link", "set", l.bridge, "up"},
	} {
		if err := l.run(ctx, args...); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		ns := fmt.Sprintf("%s%d-%s", nsPrefix, l.pid, name)
		veth := fmt.Sprintf("%s%dv%d", vethPrefix, l.pid, i+1)
		ip := fmt.Sprintf("%s.%d", subnet, 11+i)
		if err := l.run(ctx, "netns", "add", ns); err != nil {
			return nil, err
		}
		l.created = append(l.created, func() error { return l.run(context.Background(), "netns", "del", ns) })
		for _, args := range [][]string{
			{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"link", "set", veth, "master", l.bridge},
			{"link", "set", veth, "up"},
			{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		} {
			if err := l.run(ctx, args...); err != nil {
				return nil, err
			}
		}
		l.ns[name], l.nodeIP[name] = ns, ip
	}
	// The (empty) filter table the faults fill, on the bridge: a fault
	// drops frames between nodes silently, as a broken switch would (a
	// drop inside a node's namespace would fail its sends at once with
	// EPERM instead). Creating it proves that the kernel has nftables.
	l.table = bridgePrefix + strconv.Itoa(l.pid)
	if err := l.nftScript(ctx, fmt.Sprintf(`table bridge %[1]s {
	chain forward { type filter hook forward priority 0; policy accept; }
}
`, l.table)); err != nil {
		return nil, err
	}
	l.created = append(l.created, func() error {
		return l.nftScript(context.Background(), fmt.Sprintf("delete table bridge %s\n", l.table))
	})
	return l, nil
}

// command returns the path and arguments that run bin with args inside
// the node's namespace. ip netns exec execs bin in place, so the process
// ID is bin's: signals reach it directly.
func (l *lab) command(node, bin string, args []string) (string, []string) {
	return l.ip, append([]string{"netns", "exec", l.ns[node], bin}, args...)
}

// isolate drops every packet between node and the peers' addresses.
func (l *lab) isolate(ctx context.Context, node string, peers []string) error {
	return l.filter(ctx, node, peers, "drop")
}

// lose drops pct percent of the packets between node and the peers'
// addresses, in each direction, at random.
func (l *lab) lose(ctx context.Context, node string, peers []string, pct int) error {
	return l.filter(ctx, node, peers, fmt.Sprintf("numgen random mod 100 < %d drop", pct))
}

// filter replaces the bridge's rules by two: verdict for the frames from
// node to the peers, and for those back.
func (l *lab) filter(ctx context.Context, node string, peers []string, verdict string) error {
	set := "{ " + strings.Join(peers, ", ") + " }"
	return l.nftScript(ctx, fmt.Sprintf(`flush chain bridge %[1]s forward
add rule bridge %[1]s forward ip saddr %[2]s ip daddr %[3]s %[4]s
add rule bridge %[1]s forward ip saddr %[3]s ip daddr %[2]s %[4]s
`, l.table, l.nodeIP[node], set, verdict))
}

// heal removes every filter rule.
func (l *lab) heal(ctx context.Context) error {
	return l.nftScript(ctx, fmt.Sprintf("flush chain bridge %s forward\n", l.table))
}

// close removes everything the lab created, newest first. Processes still
// running in a namespace keep it alive until they exit; end them first.
func (l *lab) close() error {
	var errs []error
	for i := len(l.created) - 1; i >= 0; i-- {
		errs = append(errs, l.created[i]())
	}
	l.created = nil
	return errors.Join(errs...)
}

// describe names the lab for progress lines.
func (l *lab) describe() string {
	var parts []string
	for name, ip := range l.nodeIP {
		parts = append(parts, name+" "+ip)
	}
	slices.Sort(parts)
	return fmt.Sprintf("bridge %s (%s), one network namespace per node: %s", l.bridge, l.hostIP, strings.Join(parts, ", "))
}

// nftScript runs an nft script in the harness's namespace.
func (l *lab) nftScript(ctx context.Context, script string) error {
	ctx, cancel := context.WithTimeout(ctx, labCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *lab) run(ctx context.Context, args ...string) error {
	_, err := l.output(ctx, args...)
	return err
}

func (l *lab) output(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, labCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, l.ip, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// freeSubnet picks 10.213.x (x from 20 to 219, starting at one derived
// from the process ID) that no interface of this namespace uses.
func (l *lab) freeSubnet(ctx context.Context) (string, error) {
	out, err := l.output(ctx, "-4", "-o", "addr", "show")
	if err != nil {
		return "", err
	}
	for i := range 200 {
		s := fmt.Sprintf("%s.%d", subnetBase, 20+(l.pid+i)%200)
		if !strings.Contains(out, " "+s+".") {
			return s, nil
		}
	}
	return "", errors.New("no free 10.213.x.0/24 subnet")
}

// sweepStale removes the namespaces and bridges of earlier harnesses whose
// process no longer exists (a harness killed before its cleanup). The
// processes that ran in them died with the harness (they are started with
// a parent-death signal).
func (l *lab) sweepStale(ctx context.Context) {
	if out, err := l.output(ctx, "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
				continue
			}
			pidStr, _, _ := strings.Cut(strings.TrimPrefix(f[0], nsPrefix), "-")
			if pid, err := strconv.Atoi(pidStr); err == nil && !processExists(pid) {
				_ = l.run(ctx, "netns", "del", f[0])
			}
		}
	}
	if out, err := exec.CommandContext(ctx, l.nft, "list", "tables", "bridge").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			name, ok := strings.CutPrefix(strings.TrimSpace(line), "table bridge "+bridgePrefix)
			if pid, err := strconv.Atoi(name); ok && err == nil && !processExists(pid) {
				_ = l.nftScript(ctx, "delete table bridge "+bridgePrefix+name+"\n")
			}
		}
	}
	if out, err := l.output(ctx, "-o", "link", "show", "type", "bridge"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name := strings.TrimSuffix(f[1], ":")
			if pid, err := strconv.Atoi(strings.TrimPrefix(name, bridgePrefix)); err == nil &&
				strings.HasPrefix(name, bridgePrefix) && !processExists(pid) {
				_ = l.run(ctx, "link", "del", name)
			}
		}
	}
}

// processExists reports whether a process with the given ID exists.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
