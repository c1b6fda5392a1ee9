package mcwire

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/bradfitz/gomemcache/memcache"
)

// Class is what an error from a Node means for the node and the request.
type Class int

const (
	OK          Class = iota
	Miss              // the key is not there (get, touch, delete) or was not stored: not a failure
	Refused           // the node answered but refused this request (too large, bad key, unexpected reply): the node is fine
	Unreachable       // dial error, timeout, broken connection, or the node was marked down: the node is down
	Closed            // the Node was closed by its owner: says nothing about the server
)

// Errors a Node returns besides gomemcache's and the network's.
var (
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("memcached connections closed (Manager closed or node removed)")

	// ErrNotSent is the error of a set that waited for its batch while the
	// node was found down: it was never sent. Classify calls it Unreachable.
	ErrNotSent = errors.New("node marked down while the set waited for its batch; not sent")

	// ErrTooLarge is matched (errors.Is) by the ReplyError of a set that
	// memcached refused as larger than its item size limit (-I).
	ErrTooLarge = errors.New("item larger than the memcached node's item size limit (-I)")
)

// ReplyError is a reply to a set other than STORED or NOT_STORED, as
// memcached sent it ("SERVER_ERROR object too large for cache", say).
type ReplyError struct {
	Line     string
	tooLarge bool // the reply is memcached's refusal of an oversized item
}

func (e *ReplyError) Error() string { return "memcache: " + e.Line }

// Is reports whether target is ErrTooLarge and the reply says so.
func (e *ReplyError) Is(target error) bool { return target == ErrTooLarge && e.tooLarge }

// String returns the class's name.
func (c Class) String() string {
	switch c {
	case OK:
		return "OK"
	case Miss:
		return "Miss"
	case Refused:
		return "Refused"
	case Unreachable:
		return "Unreachable"
	case Closed:
		return "Closed"
	}
	return "Class(" + strconv.Itoa(int(c)) + ")"
}

// Classify says what err, returned by a Node, means: in one place, by the
// errors' identity, never by their text. An error it does not know is
// Refused: the node answered something, so it is not called down.
func Classify(err error) Class {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
		return Miss
	case errors.Is(err, ErrClosed):
		return Closed
	case unreachable(err):
		return Unreachable
	}
	return Refused
}

// unreachable reports whether err is a failure to reach the server: a dial
// error or timeout, a read or write deadline, a connection the server
// closed or reset, or a set not sent because the node was down.
// tlsFailed reports whether err is a failed TLS handshake: a certificate
// that does not verify, a server that does not speak TLS, an alert. The
// node cannot be used, as if it did not answer.
func tlsFailed(err error) bool {
	var (
		record   tls.RecordHeaderError
		alert    tls.AlertError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &record) || errors.As(err, &alert) || errors.As(err, &verify) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

func unreachable(err error) bool {
	var netErr net.Error // *net.OpError, *net.DNSError, a syscall.Errno
	var dialTimeout *memcache.ConnectTimeoutError
	return errors.As(err, &netErr) || errors.As(err, &dialTimeout) || tlsFailed(err) ||
		errors.Is(err, ErrNotSent) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED)
}

// staleConn reports whether err is what a pooled connection gives when the
// server closed it, for example after a restart: worth another try on a
// fresh connection before the node is called down.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
