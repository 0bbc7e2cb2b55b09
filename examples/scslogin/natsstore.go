package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsOptions configure -store nats: a NATS server embedded in this
// process, clustered with the other scslogin processes' servers, whose
// JetStream keeps the sessions in a KeyValue bucket.
type natsOptions struct {
	clusterAddr string   // where this server listens for routes from the others
	routes      []string // every server's cluster address (this one's may be among them)
	replicas    int      // copies of the bucket: 3 for a 3-server cluster
	bucket      string
	maxMemory   int64 // JetStream memory limit of this server, in bytes
}

// kvOpHeader marks a KeyValue delete or purge (nats.go does not export
// the name).
const kvOpHeader = "KV-Operation"

// natsStore is an scs.Store on a JetStream KeyValue bucket in memory
// storage. A session is one key, the token; its value is the expiry
// (8 bytes, Unix nanoseconds, big endian) followed by scs's encoded
// session. Writes (Put, Delete) are acknowledged by the stream leader once
// a quorum of the replicas has them. Reads go to the stream leader too
// (the bucket's stream has direct get turned off), so that a request sees
// the write of the previous request of its user whichever server it
// reaches: scs's natsstore uses the KeyValue Get, which with direct get
// may answer from a replica that has not applied the write yet.
type natsStore struct {
	srv    *server.Server
	nc     *nats.Conn
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's stream, with direct get off
	subj   string           // subject prefix of the bucket's keys
	dir    string           // the embedded server's store directory
}

// openNATS starts the embedded server, waits until its JetStream cluster
// can create the bucket, and opens it. It gives up when ctx ends.
func openNATS(ctx context.Context, name string, o natsOptions) (_ *natsStore, err error) {
	host, portStr, err := net.SplitHostPort(o.clusterAddr)
	if err != nil {
		return nil, fmt.Errorf("-nats-cluster %q: %w", o.clusterAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("-nats-cluster %q: %w", o.clusterAddr, err)
	}
	dir, err := os.MkdirTemp("", "scslogin-nats-")
	if err != nil {
		return nil, fmt.Errorf("nats store directory: %w", err)
	}
	st := &natsStore{dir: dir, subj: "$KV." + o.bucket + "."}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	var routes []string
	for _, r := range o.routes {
		routes = append(routes, "nats-route://"+r)
	}
	opts := &server.Options{
		ServerName: name,
		// This process's client connects in process, but the routes wait
		// for a client listener (DontListen would keep them down).
		Host:               "127.0.0.1",
		Port:               server.RANDOM_PORT,
		Cluster:            server.ClusterOpts{Name: "scslogin", Host: host, Port: port},
		Routes:             server.RoutesFromStr(strings.Join(routes, ",")),
		JetStream:          true,
		JetStreamMaxMemory: o.maxMemory,
		JetStreamMaxStore:  64 << 20, // file storage is not used
		StoreDir:           dir,
		NoSigs:             true, // this program handles SIGTERM
		NoLog:              os.Getenv("SCSLOGIN_NATS_DEBUG") == "",
	}
	if st.srv, err = server.NewServer(opts); err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if !opts.NoLog {
		st.srv.ConfigureLogger()
	}
	st.srv.Start()
	if !st.srv.ReadyForConnections(30 * time.Second) {
		return nil, errors.New("nats server: not ready for connections after 30s")
	}
	if st.nc, err = nats.Connect("", nats.InProcessServer(st.srv), nats.Name(name)); err != nil {
		return nil, fmt.Errorf("nats connect: %w", err)
	}
	js, err := jetstream.New(st.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// Until the cluster has elected a meta leader (every server must be up
	// first), creating the bucket fails: try again.
	var last error
	for {
		if last = st.openBucket(ctx, js, o); last == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nats bucket %q: %w (last: %w)", o.bucket, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// openBucket creates the bucket unless it exists, turns off direct get on
// its stream, and keeps a handle on the stream whose cached configuration
// says so (the handle's reads then ask the leader).
func (st *natsStore) openBucket(ctx context.Context, js jetstream.JetStream, o natsOptions) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, o.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   o.bucket,
			History:  1,
			Storage:  jetstream.MemoryStorage,
			Replicas: o.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another server was first
			kv, err = js.KeyValue(ctx, o.bucket)
		}
	}
	if err != nil {
		return fmt.Errorf("open bucket: %w", err)
	}
	name := "KV_" + o.bucket
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("bucket stream: %w", err)
	}
	if cfg := stream.CachedInfo().Config; cfg.AllowDirect {
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("turn off direct get: %w", err)
		}
		// Another server creating the bucket at the same time may turn it
		// on again: check on the next try.
		return errors.New("direct get was on")
	}
	st.kv, st.stream = kv, stream
	return nil
}

// Find returns the session of token, if it exists and has not expired.
func (st *natsStore) Find(token string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := st.stream.GetLastMsgForSubject(ctx, st.subj+token)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("nats get: %w", err)
	}
	if m.Header.Get(kvOpHeader) != "" || len(m.Data) < 8 { // a delete or purge marker
		return nil, false, nil
	}
	expiry := int64(binary.BigEndian.Uint64(m.Data[:8]))
	if time.Now().UnixNano() >= expiry {
		return nil, false, nil
	}
	return m.Data[8:], true, nil
}

// Commit stores the session of token until expiry.
func (st *natsStore) Commit(token string, b []byte, expiry time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v := make([]byte, 8+len(b))
	binary.BigEndian.PutUint64(v, uint64(expiry.UnixNano()))
	copy(v[8:], b)
	if _, err := st.kv.Put(ctx, token, v); err != nil {
		return fmt.Errorf("nats put: %w", err)
	}
	return nil
}

// Delete removes the session of token.
func (st *natsStore) Delete(token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.kv.Delete(ctx, token); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("nats delete: %w", err)
	}
	return nil
}

// ping reports whether the stream leader answers.
func (st *natsStore) ping(ctx context.Context) error {
	if _, err := st.stream.Info(ctx); err != nil {
		return fmt.Errorf("nats stream info: %w", err)
	}
	return nil
}

// close disconnects and stops the embedded server.
func (st *natsStore) close() {
	if st.nc != nil {
		st.nc.Close()
	}
	if st.srv != nil {
		st.srv.Shutdown()
		st.srv.WaitForShutdown()
	}
	_ = os.RemoveAll(st.dir)
}
