package cluster_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/sessionmesh/sessionmesh/cluster"
)

// ExampleDNSSeeds finds the nodes behind a Kubernetes headless Service by
// its SRV records. Pass nil to use the system's resolver; here a static
// one stands in for DNS.
func ExampleDNSSeeds() {
	discover, err := cluster.DNSSeeds(staticDNS{}, "_gossip._tcp.mesh.shop.svc.cluster.local")
	if err != nil {
		log.Fatal(err)
	}
	seeds, err := discover(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(seeds)

	cfg := cluster.DefaultConfig()
	cfg.Discover = discover // looked up at start and again while running
	_ = cfg
	// Output: [10.1.0.7:7946 10.1.0.9:7946]
}

// staticDNS answers like the cluster DNS for a headless Service with two
// ready pods.
type staticDNS struct{}

func (staticDNS) LookupSRV(_ context.Context, _, _, name string) (string, []*net.SRV, error) {
	return name + ".", []*net.SRV{
		{Target: "10-1-0-9.mesh.shop.svc.cluster.local.", Port: 7946},
		{Target: "10-1-0-7.mesh.shop.svc.cluster.local.", Port: 7946},
	}, nil
}

func (staticDNS) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips := map[string]string{
		"10-1-0-7.mesh.shop.svc.cluster.local": "10.1.0.7",
		"10-1-0-9.mesh.shop.svc.cluster.local": "10.1.0.9",
	}
	if ip, ok := ips[host]; ok {
		return []net.IPAddr{{IP: net.ParseIP(ip)}}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
