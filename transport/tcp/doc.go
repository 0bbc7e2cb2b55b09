// Package tcp is the production transport.Transport of sessionmesh:
// persistent TCP connections between the stores of a cluster, carrying
// length-prefixed frames (internal/wire), pipelined, coalesced and bounded,
// mutually authenticated and encrypted with TLS 1.3 when the cluster has a
// secret.
//
//	tr, err := tcp.Listen(tcp.Config{
//		BindAddr: "10.0.0.5:7947", SecretKey: secret, Label: "shop",
//	})
//	defer tr.Close()
//
// Most applications never call this package: sessionmesh.StartNode creates
// the transport from NodeConfig.Transport and publishes its address in the
// cluster metadata.
//
// # Files
//
//   - config.go: Config, its defaults and validation, and Stats.
//   - transport.go: the Transport type, Listen, Call and Close.
//   - dial.go: outbound connections, one per peer address, dialed on
//     demand, with the client side of the handshake.
//   - accept.go: inbound connections, limited in number overall and per
//     source host, with the server side of the handshake.
//   - conn.go: one connection's writer (coalescing queued frames into one
//     write) and reader (dispatching responses to pending calls, or
//     requests to the handler), and the replacement of a connection that
//     stays silent through a call's deadline.
//   - keyring.go: keys derived from the cluster secret, the TLS
//     configurations of both roles, and key rotation without downtime.
//
// # Errors
//
// Calls fail with the errors of package transport: ErrUnreachable when the
// peer cannot be reached or its connection broke, with ErrNotSent when the
// request certainly never left (a failed dial), and ErrRefused when the
// peer's address refused the connection (its process is gone); ErrClosed
// after Close; ErrFrameTooLarge for a request over MaxFrameSize. Key
// management fails with this package's ErrNoKeyring, ErrUnknownKey and
// ErrPrimaryKey.
//
// # Security
//
// Set Config.SecretKey (32 random bytes, the same on every node, and the
// same as cluster.Config.SecretKey if you like) and Config.Label (the
// cluster's label): every connection then runs TLS 1.3 with mutual
// authentication by keys derived from the secret and the label, so a host
// without the secret can neither read nor write a session, nor pose as a
// peer. Config.TLSConfig uses your own certificates instead. Rotate the
// secret with InstallKey, UseKey and RemoveKey on every node (and the
// cluster's keyring), one step at a time: no call fails.
//
// Every input from the network is bounded before it is read or stored:
// frames by MaxFrameSize, handshakes by HandshakeTimeout, connections by
// MaxInboundConns and MaxInboundConnsPerHost, and answers waiting for a
// slow reader by about MaxFrameSize per connection. What exceeds a bound is
// refused, counted in Stats and logged; a connection that breaks the
// protocol is closed. docs/security.md has the threat model.
package tcp
