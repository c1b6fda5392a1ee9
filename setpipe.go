package mcsession

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// setter writes sets to one memcached node, many at a time: a batch of sets
// goes out in one write and its replies come back in one read. On a
// virtual machine a set sent alone costs tens of microseconds of CPU on
// each side, almost all of it system calls and wake-ups; in a batch of ten
// each costs a tenth of that (see issue 4 in ARCHITECTURE.md). gomemcache
// sends one command per round trip and has no batched set, so sets have
// this small client of their own; every other command still goes through
// gomemcache.
type setter struct {
	addr    string
	timeout time.Duration // for the whole batch: dial, write and read
	maxIdle int

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

// errSetterClosed is returned by a setter after close.
var errSetterClosed = errors.New("mcsession: memcached connection closed (Manager closed or node removed)")

// replyError is a reply other than STORED, as memcached sent it
// ("SERVER_ERROR object too large for cache", say). classify reads it.
type replyError string

func (e replyError) Error() string { return "memcache: " + string(e) }

func newSetter(addr string, timeout time.Duration, maxIdle int) *setter {
	return &setter{addr: addr, timeout: timeout, maxIdle: maxIdle}
}

// setMany stores every op's blob under its key and sets op.err to the
// outcome of each. A connection error ends the batch: the ops not yet
// answered get it. A pooled connection the server has closed since (a
// restart, say) is replaced once by a fresh one before that.
func (s *setter) setMany(ops []*setOp) {
	c, pooled, err := s.get()
	if err != nil {
		for _, op := range ops {
			op.err = err
		}
		return
	}
	done, err := c.setMany(ops, s.timeout)
	if err != nil && pooled && done == 0 && staleConn(err) {
		c.nc.Close()
		s.dropIdle()
		if c, err = s.dial(); err == nil {
			done, err = c.setMany(ops, s.timeout)
		}
	}
	if err != nil {
		for _, op := range ops[done:] {
			op.err = err
		}
		if c != nil {
			c.nc.Close()
		}
		return
	}
	s.put(c)
}

// setMany writes ops in one batch and reads their replies. It returns how
// many ops got a reply and, if the batch ended early, why; after an error
// the connection must be closed.
func (c *setConn) setMany(ops []*setOp, timeout time.Duration) (int, error) {
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, err
	}
	var num [20]byte
	for _, op := range ops {
		c.w.WriteString("set ")
		c.w.WriteString(op.key)
		c.w.WriteString(" 0 ")
		c.w.Write(strconv.AppendInt(num[:0], int64(op.exp), 10))
		c.w.WriteByte(' ')
		c.w.Write(strconv.AppendInt(num[:0], int64(len(op.blob)), 10))
		c.w.WriteString("\r\n")
		c.w.Write(op.blob)
		c.w.WriteString("\r\n")
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	for i, op := range ops {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return i, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case string(line) == "STORED":
			op.err = nil
		case string(line) == "NOT_STORED":
			op.err = memcache.ErrNotStored
		case bytes.HasPrefix(line, []byte("SERVER_ERROR")):
			// memcached has read (and dropped) the data: the next
			// reply is the next op's.
			op.err = replyError(line)
		default:
			// CLIENT_ERROR or ERROR: memcached may have taken part of
			// the data for commands, so later replies cannot be matched
			// to ops any more.
			op.err = replyError(line)
			return i + 1, fmt.Errorf("mcsession: batch of sets cut short, connection dropped: %w", replyError(line))
		}
	}
	return len(ops), nil
}

// get returns an idle connection (pooled true) or a new one.
func (s *setter) get() (c *setConn, pooled bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, errSetterClosed
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
	nc, err := net.DialTimeout("tcp", s.addr, s.timeout)
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
