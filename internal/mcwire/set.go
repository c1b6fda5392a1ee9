package mcwire

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Set is one set command and, once sent, its outcome.
type Set struct {
	Key   string
	Value []byte
	Exp   int32 // memcached expiration: seconds, or a Unix time past 30 days
	Err   error // the outcome: nil when stored

	turn chan []*Set // a queued SetJoined's wake-up: nil when sent, else the batch to send
}

// SetMany stores every set's value under its key, all in one write with
// their replies read in one go, and sets each set's Err. A connection
// error ends the batch: the sets not yet answered get it. A pooled
// connection the server has closed since (a restart, say) is replaced once
// by a fresh one before that.
func (n *Node) SetMany(sets []*Set) { n.setter.setMany(sets) }

// setter writes sets to one memcached node, many at a time. On a virtual
// machine a set sent alone costs tens of microseconds of CPU on each side,
// almost all of it system calls and wake-ups; in a batch of ten each costs
// a tenth of that. gomemcache sends one command per round trip and has no
// batched set, so sets have this small client of their own.
type setter struct {
	addr    string
	timeout time.Duration // for the whole batch: dial, write and read
	maxIdle int
	dialFn  func(ctx context.Context, network, addr string) (net.Conn, error) // TCP, or TLS over it

	// mu guards idle and closed.
	mu     sync.Mutex
	idle   []*setConn
	closed bool
}

// setConn is one connection of a setter.
type setConn struct {
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func newSetter(addr string, timeout time.Duration, maxIdle int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *setter {
	return &setter{addr: addr, timeout: timeout, maxIdle: maxIdle, dialFn: dial}
}

func (s *setter) setMany(sets []*Set) {
	sets = checkKeys(sets)
	if len(sets) == 0 {
		return
	}
	done := 0
	err := s.run(func(c *setConn) (answered bool, err error) {
		done, err = c.setMany(sets, s.timeout)
		return done > 0, err
	})
	if err != nil {
		fail(sets[done:], err)
	}
}

// run runs f on a pooled or new connection and pools the connection again
// if f succeeds, or closes it. A pooled connection the server has closed
// since (a restart, say) is replaced once by a fresh one, unless the server
// already answered part of f's request (answered).
func (s *setter) run(f func(c *setConn) (answered bool, err error)) error {
	c, pooled, err := s.get()
	if err != nil {
		return err
	}
	answered, err := f(c)
	if err != nil && pooled && !answered && staleConn(err) {
		c.nc.Close()
		s.dropIdle()
		if c, err = s.dial(); err != nil {
			return err
		}
		_, err = f(c)
	}
	if err != nil {
		c.nc.Close()
		return err
	}
	s.put(c)
	return nil
}

// checkKeys fails the sets whose key memcached would not take, as
// memcache.ErrMalformedKey, and returns the others (sets itself if all are
// fine). A bad key must never be sent: memcached rejects the command line
// and then reads the value as commands of its own.
func checkKeys(sets []*Set) []*Set {
	bad := 0
	for _, set := range sets {
		if !legalKey(set.Key) {
			set.Err = memcache.ErrMalformedKey
			bad++
		}
	}
	if bad == 0 {
		return sets
	}
	ok := make([]*Set, 0, len(sets)-bad)
	for _, set := range sets {
		if legalKey(set.Key) {
			ok = append(ok, set)
		}
	}
	return ok
}

// legalKey reports whether memcached takes key: 1 to 250 bytes, no spaces
// or control characters.
func legalKey(key string) bool {
	if len(key) == 0 || len(key) > 250 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] == 0x7f {
			return false
		}
	}
	return true
}

// fail sets err as the outcome of every set.
func fail(sets []*Set, err error) {
	for _, set := range sets {
		set.Err = err
	}
}

// setMany writes sets in one batch and reads their replies. It returns how
// many sets got a reply and, if the batch ended early, why; after an error
// the connection must be closed.
func (c *setConn) setMany(sets []*Set, timeout time.Duration) (int, error) {
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	var num [20]byte
	for _, set := range sets {
		c.w.WriteString("set ")
		c.w.WriteString(set.Key)
		c.w.WriteString(" 0 ")
		c.w.Write(strconv.AppendInt(num[:0], int64(set.Exp), 10))
		c.w.WriteByte(' ')
		c.w.Write(strconv.AppendInt(num[:0], int64(len(set.Value)), 10))
		c.w.WriteString("\r\n")
		c.w.Write(set.Value)
		c.w.WriteString("\r\n")
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	for i, set := range sets {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return i, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case string(line) == "STORED":
			set.Err = nil
		case string(line) == "NOT_STORED":
			set.Err = memcache.ErrNotStored
		case bytes.HasPrefix(line, []byte("SERVER_ERROR")):
			// memcached has read (and dropped) the data: the next reply
			// is the next set's. Its only sign of an oversized item is
			// this reply's text.
			set.Err = &ReplyError{Line: string(line), tooLarge: bytes.Contains(line, []byte("too large"))}
		default:
			// CLIENT_ERROR or ERROR: memcached may have taken part of the
			// data for commands, so later replies cannot be matched to
			// sets any more.
			set.Err = &ReplyError{Line: string(line)}
			return i + 1, fmt.Errorf("batch of sets cut short, connection dropped: %w", set.Err)
		}
	}
	return len(sets), nil
}

// get returns an idle connection (pooled true) or a new one.
func (s *setter) get() (c *setConn, pooled bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, ErrClosed
	}
	if n := len(s.idle); n > 0 {
		c = s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	c, err = s.dial()
	return c, false, err
}

func (s *setter) dial() (*setConn, error) {
	nc, err := s.dialFn(context.Background(), "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	return &setConn{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriterSize(nc, 16<<10)}, nil
}

// put returns a healthy connection to the pool, or closes it.
func (s *setter) put(c *setConn) {
	s.mu.Lock()
	if !s.closed && len(s.idle) < s.maxIdle {
		s.idle = append(s.idle, c)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	c.nc.Close()
}

// dropIdle closes every pooled connection: one of them was found closed by
// the server, so the others very likely are too.
func (s *setter) dropIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// close closes the pooled connections; connections in use are closed when
// they are given back.
func (s *setter) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.dropIdle()
}

func (s *setter) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
