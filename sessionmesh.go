// Package sessionmesh assembles one server's node of a session cluster:
// gossip membership (package cluster), persistent authenticated replication
// connections (package transport/tcp) and the replicated session store
// (package replication), started and stopped together.
//
// Most applications need only this package and httpsession:
//
//	cfg := sessionmesh.DefaultNodeConfig()
//	cfg.Cluster.NodeName = "web-1"
//	cfg.Cluster.BindAddr = "10.0.0.5:7946"
//	cfg.Cluster.Seeds = []string{"10.0.0.5:7946", "10.0.0.6:7946"}
//	cfg.Transport.BindAddr = "10.0.0.5:7947"
//	cfg.SecretKey, cfg.Label = secret, "shop"
//	node, err := sessionmesh.StartNode(cfg)
//	sessions := httpsession.New(node.Store)
//	// ... serve with sessions.LoadAndSave(mux) ...
//	node.Leave(ctx) // on shutdown: hand sessions over, then leave
//	node.Close()
//
// This package is the composition root: it is the only one that imports
// cluster, transport/tcp and replication together. replication knows the
// cluster only through its own Membership interface, which this package
// implements over a *cluster.Cluster; the store's transport address travels
// in the member's cluster metadata under AddrTag.
package sessionmesh

import (
	"context"
	"errors"
	"fmt"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// AddrTag is the cluster tag under which a node publishes the address of its
// replication transport. StartNode sets it; Membership reads it. Members
// without it run no store and are not replicated to.
const AddrTag = "repl"

// ZoneTag is the cluster tag under which a node publishes its zone
// (NodeConfig.Zone). StartNode sets it; Membership reads it.
const ZoneTag = "zone"

// NodeConfig configures a Node: the cluster membership, the replication
// transport and the store of one server. Start from DefaultNodeConfig (or
// DefaultLocalNodeConfig) and set at least the cluster's NodeName, BindAddr
// and Seeds and the transport's BindAddr.
type NodeConfig struct {
	// Cluster configures membership. Its Tags get AddrTag set to the
	// transport's address; SecretKey, SecondaryKeys and Label below
	// override its own.
	Cluster cluster.Config
	// Transport configures the replication connections. SecretKey,
	// SecondaryKeys and Label below override its own.
	Transport tcp.Config
	// Store configures the store; its Membership and Transport are set by
	// StartNode, and its SnapshotKey (with SnapshotOldKeys) and
	// SnapshotLabel, when unset, to SecretKey (with SecondaryKeys) and
	// Label below.
	Store replication.Config

	// SecretKey, when set, authenticates and encrypts both gossip and
	// replication (16, 24 or 32 bytes; 32 recommended). The same on every
	// node.
	SecretKey []byte
	// SecondaryKeys are further keys accepted from peers, during a
	// rotation.
	SecondaryKeys [][]byte
	// Label names the cluster; nodes with another label never join or
	// replicate with this one.
	Label string
	// Zone names the failure domain the node runs in (an availability
	// zone, a rack): in Backups mode each session's copies are spread over
	// as many zones as the cluster spans, so that losing a whole zone
	// loses no session (see replication.Member.Zone). Empty: no zone.
	Zone string
}

// DefaultNodeConfig returns the defaults for a server on a LAN.
func DefaultNodeConfig() NodeConfig {
	return NodeConfig{Cluster: cluster.DefaultConfig(), Store: replication.DefaultConfig()}
}

// DefaultLocalNodeConfig returns defaults for nodes on one machine (tests,
// demos): fast failure detection and repair, loopback addresses with
// ports picked by the system.
func DefaultLocalNodeConfig() NodeConfig {
	return NodeConfig{
		Cluster:   cluster.DefaultLocalConfig(),
		Transport: tcp.Config{BindAddr: "127.0.0.1:0"},
		Store:     replication.DefaultLocalConfig(),
	}
}

// Node is one server's share of the cluster: its membership, replication
// transport and session store, started and stopped together. Most
// applications create one with StartNode and pass Node.Store to
// httpsession.New.
type Node struct {
	// Store holds the sessions.
	Store *replication.Store
	// Cluster is the node's membership.
	Cluster *cluster.Cluster
	// Transport carries replication traffic; the Store owns it.
	Transport *tcp.Transport
}

// StartNode starts a transport, joins the cluster in the background and
// starts the store on both. It returns at once; Node.Store.Ready is closed
// when the node holds every session it owns.
func StartNode(cfg NodeConfig) (*Node, error) {
	if cfg.SecretKey != nil {
		cfg.Transport.SecretKey, cfg.Cluster.SecretKey = cfg.SecretKey, cfg.SecretKey
		cfg.Transport.SecondaryKeys, cfg.Cluster.SecondaryKeys = cfg.SecondaryKeys, cfg.SecondaryKeys
	}
	if cfg.Label != "" {
		cfg.Transport.Label, cfg.Cluster.Label = cfg.Label, cfg.Label
	}
	if cfg.Store.SnapshotKey == nil {
		cfg.Store.SnapshotKey, cfg.Store.SnapshotOldKeys = cfg.SecretKey, cfg.SecondaryKeys
	}
	if cfg.Store.SnapshotLabel == "" {
		cfg.Store.SnapshotLabel = cfg.Label
	}
	if cfg.Transport.Logger == nil {
		cfg.Transport.Logger = cfg.Store.Logger
	}
	tr, err := tcp.Listen(cfg.Transport)
	if err != nil {
		return nil, fmt.Errorf("start node: %w", err)
	}
	tags := make(map[string]string, len(cfg.Cluster.Tags)+1)
	for k, v := range cfg.Cluster.Tags {
		tags[k] = v
	}
	tags[AddrTag] = tr.Addr()
	if cfg.Zone != "" {
		tags[ZoneTag] = cfg.Zone
	}
	cfg.Cluster.Tags = tags
	if cfg.Cluster.Logger == nil {
		cfg.Cluster.Logger = cfg.Store.Logger
	}
	cl, err := cluster.New(cfg.Cluster)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start node: %w", err), tr.Close())
	}
	cfg.Store.Membership, cfg.Store.Transport = Membership(cl), tr
	st, err := replication.New(cfg.Store)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start node: %w", err), tr.Close(), cl.Close())
	}
	return &Node{Store: st, Cluster: cl, Transport: tr}, nil
}

// Leave leaves the cluster gracefully: the store hands its sessions over
// to their new owners, then the membership announces the departure. Call
// Close afterwards.
func (n *Node) Leave(ctx context.Context) error {
	if err := n.Store.Leave(ctx); err != nil {
		return fmt.Errorf("leave: hand over sessions: %w", err)
	}
	if err := n.Cluster.Leave(ctx); err != nil {
		return fmt.Errorf("leave: announce: %w", err)
	}
	return nil
}

// Close stops the store, the transport and the membership, and waits for
// their goroutines. Without Leave first, peers see a crash. It is safe to
// call more than once.
func (n *Node) Close() error {
	return errors.Join(n.Store.Close(), n.Cluster.Close())
}

// InstallKey adds a key that peers may use, for gossip and replication.
// Rotate a secret by calling InstallKey(new) on every node, then
// UseKey(new) on every node, then RemoveKey(old) on every node.
func (n *Node) InstallKey(key []byte) error {
	return errors.Join(n.Transport.InstallKey(key), n.Cluster.InstallKey(key))
}

// UseKey makes an installed key the one this node presents.
func (n *Node) UseKey(key []byte) error {
	if err := errors.Join(n.Transport.UseKey(key), n.Cluster.UseKey(key)); err != nil {
		return err
	}
	return n.Store.UseSnapshotKey(key)
}

// RemoveKey stops accepting a key.
func (n *Node) RemoveKey(key []byte) error {
	return errors.Join(n.Transport.RemoveKey(key), n.Cluster.RemoveKey(key))
}
