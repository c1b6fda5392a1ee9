package mcsession

import (
	"errors"
	"fmt"
)

// Errors returned by the Manager, for callers to test with errors.Is.
var (
	// ErrClosed is returned by SetNodes after Shutdown or Close.
	ErrClosed = errors.New("mcsession: manager is closed")

	// ErrTooLarge is wrapped by the backup error of a session whose encoded
	// form exceeds Config.ItemSizeLimit, or that memcached refused as larger
	// than its own item size limit (-I). The session keeps working locally.
	ErrTooLarge = errors.New("mcsession: session too large for memcached")

	// ErrNoNodeUp is wrapped by the backup error of a session when every
	// memcached node is down. The backup is retried.
	ErrNoNodeUp = errors.New("mcsession: no memcached node is up")

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

// NodeError reports a failed memcached operation on one node. Errors from
// the backend wrap it, so errors.As finds the node.
type NodeError struct {
	Node string // node id, such as "n1"
	Addr string // host:port
	Op   string // "get", "set", "touch", "delete" or "version"
	Err  error  // the underlying error
}

// Error says which operation failed on which node, and why.
func (e *NodeError) Error() string {
	return fmt.Sprintf("mcsession: memcached %s on node %s (%s): %v", e.Op, e.Node, e.Addr, e.Err)
}

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (e *NodeError) Unwrap() error { return e.Err }
