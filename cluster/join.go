package cluster

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"time"
)

// runJoiner is the background joiner, started by New. When there are seeds
// or a Discover function (called before every attempt, see seeds), joins
// is true: memberlist itself never retries a join, so a node started before its
// seeds would stay alone for ever. The joiner tries the seeds at once, then
// every JoinRetryInterval while the node has no other member, and every
// RejoinInterval otherwise, each time dialling only the seed addresses that
// are not already members, plus the seeds that do not know this node as it
// is now (see mergeDelegate), every JoinRetryInterval until they do.
//
// While the membership changes it also exchanges state with one random
// member every JoinRetryInterval, until syncWindow after the last change
// (syncState). It returns when Close or Leave is called.
func (c *Cluster) runJoiner(joins bool) {
	defer c.wg.Done()
	defer c.settle()

	t := time.NewTimer(0)
	defer t.Stop()
	first := true
	pending := make(map[string]bool) // seeds with a stale view of this node
	var disc discovery
	nextJoin := time.Now()
	var nextSync time.Time // zero: none due
	for {
		select {
		case <-c.stopCtx.Done():
			return
		case <-c.leaving:
			return
		case <-c.events.changed:
			if nextSync.IsZero() {
				nextSync = time.Now().Add(c.cfg.JoinRetryInterval)
			}
		case <-t.C:
		}
		if now := time.Now(); joins && !now.Before(nextJoin) {
			c.joinRound(&disc, pending, first)
			first = false
			wait := c.cfg.RejoinInterval
			if c.events.count() <= 1 || len(pending) > 0 {
				wait = c.cfg.JoinRetryInterval
			}
			nextJoin = now.Add(wait)
		}
		if now := time.Now(); !nextSync.IsZero() && !now.Before(nextSync) {
			c.syncState(pending)
			nextSync = time.Time{}
			if c.events.changedSince(now.Add(-c.syncWindow())) {
				nextSync = now.Add(c.cfg.JoinRetryInterval)
			}
		}
		switch {
		case !nextSync.IsZero() && (!joins || nextSync.Before(nextJoin)):
			t.Reset(time.Until(nextSync))
		case joins:
			t.Reset(time.Until(nextJoin))
		}
	}
}

// joinRound is one attempt to join the seeds (runJoiner).
func (c *Cluster) joinRound(disc *discovery, pending map[string]bool, first bool) {
	alone := c.events.count() <= 1
	tried, joined := c.joinSeeds(c.seeds(disc), pending)
	switch {
	case alone && joined > 0:
		c.logger.Info("cluster: joined", "seeds_answered", joined, "members", c.events.count())
	case first && alone && tried == 0:
		c.logger.Info("cluster: no seed other than this node; running alone")
	case first && alone:
		c.logger.Info("cluster: no seed answered; running alone and retrying", "every", c.cfg.JoinRetryInterval)
	}
	if first {
		c.settle()
	}
}

// syncWindow is how long after the last join, leave or failure of a member
// the joiner keeps exchanging state (syncState): five exchanges.
func (c *Cluster) syncWindow() time.Duration { return 5 * c.cfg.JoinRetryInterval }

// syncState exchanges the full membership state with one random other
// member (memberlist's push/pull, which a join makes), so that a node that
// missed the gossip of a join or a failure learns of it within moments
// rather than at the next periodic push/pull: PushPullInterval (30 s on a
// LAN), which memberlist doubles at 64 members. When many nodes start at
// once their gossip packets compete for the CPU and the sockets' buffers:
// in a start of 64 servers on one 2-core machine, one node missed two
// joins and listed them only 50 s later.
func (c *Cluster) syncState(pending map[string]bool) {
	var others []string
	for addr := range c.events.addrs() {
		if addr != c.local.Addr {
			others = append(others, addr)
		}
	}
	if len(others) == 0 {
		return
	}
	addr := others[rand.IntN(len(others))]
	c.syncs.Add(1)
	if err := c.join(addr); err != nil {
		c.logger.Debug("cluster: state exchange", "member", addr, "err", err)
		return
	}
	c.checkSeedView(addr, pending)
}

// joinSeeds makes one join attempt to every address of seeds that is not
// this node and is either not a current member or pending (its view of this
// node was stale at the last join). It updates pending, and returns how many
// addresses it tried and how many answered.
func (c *Cluster) joinSeeds(seeds []string, pending map[string]bool) (tried, joined int) {
	members := c.events.addrs()
	seen := make(map[string]bool)
	for _, seed := range seeds {
		host, port, err := splitSeed(seed)
		if err != nil { // validated in New
			continue
		}
		ips, err := c.resolve(host)
		if err != nil {
			c.logger.Debug("cluster: resolve seed", "seed", seed, "err", err)
			continue
		}
		for _, ip := range ips {
			if c.self.is(ip, port) {
				continue
			}
			addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
			if members[addr] && !pending[addr] || seen[addr] {
				continue
			}
			seen[addr] = true
			if c.stopCtx.Err() != nil || isClosed(c.leaving) {
				return tried, joined
			}
			tried++
			c.joinAttempts.Add(1)
			if err := c.join(addr); err != nil {
				c.joinFailures.Add(1)
				c.logger.Debug("cluster: join seed", "seed", addr, "err", err)
				continue
			}
			joined++
			c.checkSeedView(addr, pending)
		}
	}
	return tried, joined
}

// checkSeedView marks seed as pending when the state it sent during the join
// that just ended showed a previous life of this node.
func (c *Cluster) checkSeedView(seed string, pending map[string]bool) {
	stale := c.merge.stale.Swap(nil)
	if stale == nil {
		if pending[seed] {
			c.logger.Debug("cluster: seed knows this node now", "seed", seed)
			delete(pending, seed)
		}
		return
	}
	if !pending[seed] && *stale != c.local.Addr {
		c.logger.Info("cluster: seed knows this node's name at another address; re-joining until it accepts this one",
			"seed", seed, "old_addr", *stale, "every", c.cfg.JoinRetryInterval)
	}
	pending[seed] = true
}

// join makes one join attempt. It holds lifeMu shared so that Close does not
// shut memberlist down under it.
func (c *Cluster) join(addr string) error {
	c.lifeMu.RLock()
	defer c.lifeMu.RUnlock()
	if c.closed.Load() {
		return ErrClosed
	}
	_, err := c.ml.Join([]string{addr})
	return err
}

// resolve returns the IP addresses of a seed host. Names are looked up on
// every attempt, so a seed may come up under a new address.
func (c *Cluster) resolve(host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.TCPTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		ips = append(ips, a.IP)
	}
	return ips, nil
}

// selfAddrs recognises this node's own gossip addresses in the seed list, so
// that every node can be given the same list. (memberlist would happily
// "join" itself and report success.)
type selfAddrs struct {
	bindIP   net.IP // may be unspecified (0.0.0.0)
	bindPort int
	advIP    net.IP
	advPort  int
	local    []net.IP // interface addresses, when bindIP is unspecified
}

func newSelfAddrs(bindIP net.IP, bindPort int, advIP net.IP, advPort int) selfAddrs {
	s := selfAddrs{bindIP: bindIP, bindPort: bindPort, advIP: advIP, advPort: advPort}
	if bindIP == nil || bindIP.IsUnspecified() {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					s.local = append(s.local, n.IP)
				}
			}
		}
	}
	return s
}

// is reports whether ip:port reaches this node.
func (s selfAddrs) is(ip net.IP, port int) bool {
	if port == s.advPort && ip.Equal(s.advIP) {
		return true
	}
	if port != s.bindPort {
		return false
	}
	if ip.IsUnspecified() { // dialling 0.0.0.0 reaches the local host
		return true
	}
	if s.bindIP != nil && !s.bindIP.IsUnspecified() {
		return ip.Equal(s.bindIP)
	}
	if ip.IsLoopback() {
		return true
	}
	for _, l := range s.local {
		if ip.Equal(l) {
			return true
		}
	}
	return false
}
