// Package mcwire talks to memcached nodes: gomemcache for single commands,
// a small pipelining client of its own for batches of sets, group commit
// for sets sent one at a time, and the classification of every error it
// returns. It knows nothing of sessions.
package mcwire

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Node is the connection pool of one memcached server. Create it with New;
// it is safe for concurrent use.
type Node struct {
	client *memcache.Client
	setter *setter // batches of sets; client does everything else
	joiner joiner  // single sets that overlap share a batch
	alive  func() bool
}

// New returns a Node for the server at addr. timeout bounds every call (a
// batch of sets is one call); maxIdle bounds the idle connections kept of
// each kind. alive reports whether the owner considers the server up: a
// set that waited for a batch to a server found down meanwhile is not sent
// (ErrNotSent). tlsConfig, if not nil, makes every connection TLS; a
// handshake that fails is unreachable (Classify), like a refused connect.
func New(addr string, timeout time.Duration, maxIdle int, alive func() bool, tlsConfig *tls.Config) *Node {
	dial := dialer(addr, timeout, tlsConfig)
	c := memcache.New(addr)
	c.Timeout = timeout
	c.MaxIdleConns = maxIdle
	c.DialContext = dial
	return &Node{client: c, setter: newSetter(addr, timeout, maxIdle, dial), alive: alive}
}

// dialer returns the function that connects to a server: TCP, and TLS
// over it if tlsConfig is not nil. timeout bounds the connect and the
// handshake together.
// The certificate is checked against the host of addr as given (gomemcache
// dials the address it resolved, which would lose a host name), unless
// tlsConfig names a ServerName.
func dialer(addr string, timeout time.Duration, tlsConfig *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if tlsConfig == nil {
		return d.DialContext
	}
	if tlsConfig.ServerName == "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName, _, _ = net.SplitHostPort(addr)
	}
	return (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext
}

// Close closes the idle connections; connections in use are closed when
// their call returns. Every later call fails with ErrClosed, except Delete.
func (n *Node) Close() {
	n.setter.close()
	n.client.Close()
}

// Get returns the value stored under key, or memcache.ErrCacheMiss.
func (n *Node) Get(key string) ([]byte, error) {
	var item *memcache.Item
	err := n.do(func(c *memcache.Client) (err error) {
		item, err = c.Get(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return item.Value, nil
}

// Touch sets key's expiration, or returns memcache.ErrCacheMiss.
func (n *Node) Touch(key string, exp int32) error {
	return n.do(func(c *memcache.Client) error { return c.Touch(key, exp) })
}

// Delete deletes key, or returns memcache.ErrCacheMiss. It works after
// Close too, on a connection it closes afterwards: deleting a copy is how a
// logout takes effect, and it must not depend on the order of shutdown.
func (n *Node) Delete(key string) error {
	del := func(c *memcache.Client) error { return c.Delete(key) }
	if n.setter.isClosed() {
		err := del(n.client)
		n.client.Close()
		return err
	}
	return n.do(del)
}

// Ping asks the server for its version: the cheapest sign of life.
func (n *Node) Ping() error {
	return n.do(func(c *memcache.Client) error { return c.Ping() })
}

// do runs op, retrying stale pooled connections: gomemcache keeps up to
// MaxIdleConns idle connections, and after a server restart each of them is
// dead, so it retries until a fresh dial answers.
func (n *Node) do(op func(*memcache.Client) error) error {
	if n.setter.isClosed() {
		return ErrClosed
	}
	err := op(n.client)
	for i := 0; i < n.maxIdle() && staleConn(err); i++ {
		err = op(n.client)
	}
	if n.setter.isClosed() {
		// Closed while op ran: gomemcache pooled op's connection again.
		n.client.Close()
	}
	return err
}

// maxIdle is how many idle connections gomemcache keeps: MaxIdleConns,
// or its default for 0.
func (n *Node) maxIdle() int {
	if n.client.MaxIdleConns > 0 {
		return n.client.MaxIdleConns
	}
	return memcache.DefaultMaxIdleConns
}
