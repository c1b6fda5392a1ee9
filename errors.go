package mcsession

import (
	"errors"
	"fmt"
)

// Errors returned by the Manager, for callers to test with errors.Is.
var (
	// ErrClosed is returned by SetNodes after Shutdown or Close.
	ErrClosed = errors.New("mcsession: manager is closed")

	// ErrNotFlushed is wrapped by Shutdown's error when some sessions could
	// not be backed up before it gave up.
	ErrNotFlushed = errors.New("mcsession: sessions not backed up")
)

// ConfigError reports an invalid Config field; New returns it.
type ConfigError struct {
	Field   string // the Config field, such as "Route" or "Cookie.Name"
	Problem string // what is wrong with it
}

// Error returns "mcsession: invalid Config.<Field>: <Problem>".
func (e *ConfigError) Error() string {
	return fmt.Sprintf("mcsession: invalid Config.%s: %s", e.Field, e.Problem)
}

func configError(field, problem string) error { return &ConfigError{Field: field, Problem: problem} }

// Errors of stores, kept in Stats and logs; no exported function returns
// them.
var (
	// errTooLarge is wrapped by the error of a store whose encoded session
	// exceeds Config.ItemSizeLimit, or that memcached refused as larger
	// than its own item size limit (-I). The session keeps working locally.
	errTooLarge = errors.New("mcsession: session too large for memcached")

	// errNoNodeUp is the error of a store when every memcached node is
	// down. The store is retried.
	errNoNodeUp = errors.New("mcsession: no memcached node is up")
)

// nodeError reports a failed memcached operation on one node, for logs.
// It wraps the wire's error, so mcwire.Classify sees through it.
type nodeError struct {
	node, addr, op string
	err            error
}

func opError(n *node, op string, err error) error {
	return &nodeError{node: n.ID, addr: n.Addr, op: op, err: err}
}

func (e *nodeError) Error() string {
	return fmt.Sprintf("mcsession: memcached %s on node %s (%s): %v", e.op, e.node, e.addr, e.err)
}

func (e *nodeError) Unwrap() error { return e.err }

// errPermanent marks a store error that retrying cannot fix until the
// session changes again: an encoding error or a session that is too large.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// retryable reports whether a failed store should be retried later.
func retryable(err error) bool {
	if err == nil {
		return false // before the target below, which escapes: no allocation for a success
	}
	var p errPermanent
	return !errors.As(err, &p)
}
