package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// maxDiscovered bounds the seeds one call of Config.Discover contributes,
// and the SRV targets DNSSeeds looks up per name.
const maxDiscovered = 512

// Resolver looks up the DNS records DNSSeeds reads. *net.Resolver
// implements it (net.DefaultResolver is the default); tests pass a fake.
// It must be safe for concurrent use.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

var _ Resolver = (*net.Resolver)(nil)

// The prefixes of DNSSeeds names.
const (
	dnsPrefix    = "dns+"
	dnsSRVPrefix = "dnssrv+"
)

// dnsName is one parsed DNSSeeds name.
type dnsName struct {
	host string
	port int  // for A/AAAA names
	srv  bool // look up SRV records of host
}

// DNSSeeds returns a function for Config.Discover that finds the gossip
// addresses of the other nodes in DNS each time it is called: the
// addresses behind a Kubernetes headless Service, a Consul service, or any
// name with one record per node. Each name is one of:
//
//	host:port, host            A and AAAA records of host, each address with port (DefaultPort when omitted)
//	dns+host:port, dns+host    the same, spelled out
//	dnssrv+name, _svc._proto.name   SRV records of name: each target's A and AAAA addresses, with the record's port
//
// A Kubernetes headless Service "mesh" in namespace "shop" with a port
// named "gossip" is found as "mesh.shop.svc.cluster.local:7946" or, with
// the port taken from DNS, "_gossip._tcp.mesh.shop.svc.cluster.local".
// Give the Service publishNotReadyAddresses: true, so that nodes starting
// together find each other before they are ready (docs/kubernetes.md).
//
// A name with no records (NXDOMAIN, or no answer) contributes nothing and
// is not an error: the first node of a cluster finds nobody. Other lookup
// failures are returned, joined, together with the addresses the other
// names gave. The addresses come sorted and without duplicates; the
// node's own address among them is skipped by the joiner. r nil means
// net.DefaultResolver. DNSSeeds returns an error for a malformed name.
func DNSSeeds(r Resolver, names ...string) (func(ctx context.Context) ([]string, error), error) {
	if r == nil {
		r = net.DefaultResolver
	}
	if len(names) == 0 {
		return nil, errors.New("cluster: DNSSeeds: no name")
	}
	parsed := make([]dnsName, 0, len(names))
	for _, name := range names {
		n, err := parseDNSName(name)
		if err != nil {
			return nil, fmt.Errorf("cluster: DNSSeeds: %w", err)
		}
		parsed = append(parsed, n)
	}
	return func(ctx context.Context) ([]string, error) {
		var out []string
		var errs []error
		for _, n := range parsed {
			addrs, err := n.lookup(ctx, r)
			out = append(out, addrs...)
			if err != nil {
				errs = append(errs, err)
			}
		}
		slices.Sort(out)
		return slices.Compact(out), errors.Join(errs...)
	}, nil
}

func parseDNSName(name string) (dnsName, error) {
	s := strings.TrimSpace(name)
	switch {
	case strings.HasPrefix(s, dnsSRVPrefix):
		return parseSRVName(name, strings.TrimPrefix(s, dnsSRVPrefix))
	case strings.HasPrefix(s, "_"):
		return parseSRVName(name, s)
	}
	s = strings.TrimPrefix(s, dnsPrefix)
	host, port, err := splitSeed(s)
	if err != nil {
		return dnsName{}, err
	}
	return dnsName{host: strings.TrimSuffix(host, "."), port: port}, nil
}

func parseSRVName(orig, s string) (dnsName, error) {
	if s == "" || strings.Contains(s, ":") || !validHostname(s) {
		return dnsName{}, fmt.Errorf("%q: want an SRV name such as _gossip._tcp.mesh.default.svc.cluster.local, without a port", orig)
	}
	return dnsName{host: s, srv: true}, nil
}

// lookup returns the gossip addresses n stands for now.
func (n dnsName) lookup(ctx context.Context, r Resolver) ([]string, error) {
	if !n.srv {
		return lookupHost(ctx, r, n.host, n.port)
	}
	_, srvs, err := r.LookupSRV(ctx, "", "", n.host)
	if err != nil && !isNotFound(err) {
		err = fmt.Errorf("cluster: look up SRV %s: %w", n.host, err)
	} else {
		err = nil
	}
	var out []string
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for i, s := range srvs {
		if i >= maxDiscovered {
			break
		}
		if s == nil || s.Port == 0 || s.Target == "" || s.Target == "." {
			continue
		}
		addrs, err := lookupHost(ctx, r, strings.TrimSuffix(s.Target, "."), int(s.Port))
		out = append(out, addrs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// lookupHost returns host's addresses with port.
func lookupHost(ctx context.Context, r Resolver, host string, port int) ([]string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []string{net.JoinHostPort(ip.String(), strconv.Itoa(port))}, nil
	}
	ips, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("cluster: look up %s: %w", host, err)
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		if ip.IP == nil || ip.Zone != "" {
			continue // a link-local address with a zone is no seed
		}
		out = append(out, net.JoinHostPort(ip.IP.String(), strconv.Itoa(port)))
	}
	return out, nil
}

// isNotFound reports a name that has no records: for discovery, an empty
// answer rather than a failure.
func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

// discovery is the joiner's state for Config.Discover: whether the last
// call failed, so that a failure is logged at warning level once, not at
// every attempt.
type discovery struct {
	failing bool
}

// seeds returns the static seeds followed by the valid addresses Discover
// returns now. It runs on the joiner's goroutine.
func (c *Cluster) seeds(d *discovery) []string {
	if c.cfg.Discover == nil {
		return c.cfg.Seeds
	}
	ctx, cancel := context.WithTimeout(c.stopCtx, c.cfg.TCPTimeout)
	defer cancel()
	found, err := c.cfg.Discover(ctx)
	switch {
	case err != nil && c.stopCtx.Err() != nil:
		return nil // closing
	case err != nil && !d.failing:
		c.logger.Warn("cluster: seed discovery failed; retrying at every join attempt", "err", err, "found", len(found))
	case err != nil:
		c.logger.Debug("cluster: seed discovery failed", "err", err, "found", len(found))
	case d.failing:
		c.logger.Info("cluster: seed discovery works again", "found", len(found))
	}
	d.failing = err != nil
	out := slices.Clone(c.cfg.Seeds)
	for i, s := range found {
		if i >= maxDiscovered {
			c.logger.Debug("cluster: too many discovered seeds; using the first ones", "found", len(found), "max", maxDiscovered)
			break
		}
		if _, _, err := splitSeed(s); err != nil {
			c.logger.Debug("cluster: discovered seed ignored", "seed", s, "err", err)
			continue
		}
		out = append(out, s)
	}
	return out
}
