// Package memcacheserver is an embedded, in-process memcached speaking the
// text protocol, for demos and tests on machines without the memcached
// binary.
//
// # Usage
//
//	s, err := memcacheserver.Start("127.0.0.1:0", memcacheserver.Options{})
//	if err != nil {
//		return err
//	}
//	defer s.Close()
//	client := memcache.New(s.Addr())
//
// # Protocol
//
// The server answers get, gets, gat, gats, set, add, replace, append,
// prepend, cas, touch, delete, incr, decr, flush_all, version, verbosity,
// stats and quit with memcached's reply formats, including noreply and
// pipelining. Items expire as in memcached (an exptime of up to 30 days is
// relative, larger is a Unix time, negative is already expired) and the least
// recently used items are evicted when MaxBytes is reached. Like memcached,
// the server closes a connection whose command line has no newline within
// 2048 bytes (retrievals of many keys may be longer), and swallows the data
// of a value larger than MaxItemSize in small chunks. There is no binary or
// meta protocol, no UDP and no authentication.
//
// [Server.Close] behaves like a crash: connections are cut and the items are
// lost.
package memcacheserver

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Defaults used when an [Options] field is zero.
const (
	// DefaultMaxItemSize is the largest value accepted, like memcached -I 1m.
	DefaultMaxItemSize = 1 << 20
	// DefaultMaxBytes is the memory limit for items, like memcached -m 64.
	DefaultMaxBytes = 64 << 20
)

// Version is the version the server reports to "version" and "stats".
const Version = "1.6.0-embedded"

// Options configures a [Server]. The zero value is usable.
type Options struct {
	// MaxItemSize is the largest value, in bytes, that a storage command
	// may carry; larger ones are answered with "SERVER_ERROR object too
	// large for cache". Default: DefaultMaxItemSize.
	MaxItemSize int
	// MaxBytes bounds the memory used by items (keys, values and a fixed
	// per-item overhead); the least recently used items are evicted to stay
	// below it. Default: DefaultMaxBytes.
	MaxBytes int64
	// Now returns the current time; tests inject a fake clock to check
	// expiry. Default: time.Now.
	Now func() time.Time
}

// Server is an in-process memcached speaking the text protocol. Create it
// with [Start]; the zero value is not usable. It is safe for concurrent use.
type Server struct {
	ln    net.Listener
	store *store
	stats counters
	start time.Time
	done  chan struct{} // closed by Close to stop the accept loop's backoff
	wg    sync.WaitGroup

	// mu guards conns and closed.
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on addr (for example "127.0.0.1:0") and serves until
// [Server.Close]. It returns an error if opts has a negative size, if
// MaxItemSize exceeds MaxBytes, or if it cannot listen.
func Start(addr string, opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	s.ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("memcacheserver: %w", err)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// newServer returns a server without a listener, as Start and the fuzz test
// need it.
func newServer(opts Options) (*Server, error) {
	if opts.MaxItemSize < 0 || opts.MaxBytes < 0 {
		return nil, errors.New("memcacheserver: negative MaxItemSize or MaxBytes")
	}
	if opts.MaxItemSize == 0 {
		opts.MaxItemSize = DefaultMaxItemSize
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if int64(opts.MaxItemSize) > opts.MaxBytes {
		return nil, fmt.Errorf("memcacheserver: MaxItemSize %d exceeds MaxBytes %d", opts.MaxItemSize, opts.MaxBytes)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		store: newStore(opts.MaxBytes, opts.MaxItemSize, opts.Now),
		start: opts.Now(),
		done:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}, nil
}

// Addr returns the address the server listens on, as "host:port".
func (s *Server) Addr() string {
	return s.ln.Addr().String()
}

// Close stops the server as a crash would: it closes the listener and every
// client connection at once, drops all items, and waits for the server's
// goroutines to exit. Further dials are refused. Close is idempotent; it
// returns the error from closing the listener the first time, nil after.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.store.flush(0)
	return err
}

// acceptLoop accepts connections until the listener is closed and serves
// each on its own goroutine.
func (s *Server) acceptLoop() {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Probably out of file descriptors: wait, as net/http does.
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1) // while acceptLoop's own count keeps Close's Wait from returning
		s.mu.Unlock()
		s.stats.currConnections.Add(1)
		s.stats.totalConnections.Add(1)
		go s.serveConn(c)
	}
}

// serveConn serves one client connection until it fails, quits or the
// server closes it.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	s.serve(c, c)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	s.stats.currConnections.Add(^uint64(0))
}
