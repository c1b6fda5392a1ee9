package mcwire_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
)

// replyTo returns the error SetMany gives a set that a fake node answers
// with line: the ReplyError exactly as the setter builds it from the wire.
func replyTo(t *testing.T, line string) error {
	t.Helper()
	srv := startFake(t, replying(line))
	n := newNode(t, srv.addr(), waitFor, 1, alwaysUp)
	sets := newSets("reply", 10)
	n.SetMany(sets)
	require.Error(t, sets[0].Err, "set answered %q: an error", line)
	return sets[0].Err
}

// Classify sorts every error a Node returns by its identity: the real
// network errors of a refused dial and of a silent node, gomemcache's
// sentinels, the wire's own errors and replies.
func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		err      func(t *testing.T) error
		want     mcwire.Class
		tooLarge bool // errors.Is(err, ErrTooLarge)
	}{
		{name: "nil", err: func(*testing.T) error { return nil }, want: mcwire.OK},
		{name: "ErrCacheMiss", err: func(*testing.T) error { return memcache.ErrCacheMiss }, want: mcwire.Miss},
		{name: "ErrCacheMiss wrapped", err: func(*testing.T) error { return fmt.Errorf("get k: %w", memcache.ErrCacheMiss) }, want: mcwire.Miss},
		{name: "ErrNotStored", err: func(*testing.T) error { return memcache.ErrNotStored }, want: mcwire.Miss},
		{name: "ErrNotStored wrapped", err: func(*testing.T) error { return fmt.Errorf("set k: %w", memcache.ErrNotStored) }, want: mcwire.Miss},
		{name: "ErrClosed", err: func(*testing.T) error { return mcwire.ErrClosed }, want: mcwire.Closed},
		{name: "ErrClosed wrapped", err: func(*testing.T) error { return fmt.Errorf("get k: %w", mcwire.ErrClosed) }, want: mcwire.Closed},
		{name: "ErrNotSent", err: func(*testing.T) error { return mcwire.ErrNotSent }, want: mcwire.Unreachable},
		{name: "ErrNotSent wrapped", err: func(*testing.T) error { return fmt.Errorf("store: %w", mcwire.ErrNotSent) }, want: mcwire.Unreachable},
		{
			name: "dial refused, Get",
			err: func(t *testing.T) error {
				n := newNode(t, closedPort(t), waitFor, 1, alwaysUp)
				_, err := n.Get("k")
				require.Error(t, err, "Get from a closed port: a dial error")
				return err
			},
			want: mcwire.Unreachable,
		},
		{
			name: "dial refused, SetMany",
			err: func(t *testing.T) error {
				n := newNode(t, closedPort(t), waitFor, 1, alwaysUp)
				sets := newSets("refused", 10)
				n.SetMany(sets)
				require.Error(t, sets[0].Err, "SetMany to a closed port: a dial error")
				return sets[0].Err
			},
			want: mcwire.Unreachable,
		},
		{
			name: "read deadline exceeded",
			err: func(t *testing.T) error {
				srv := startFake(t, silent)
				n := newNode(t, srv.addr(), 50*time.Millisecond, 1, alwaysUp)
				_, err := n.Get("k")
				require.ErrorIs(t, err, os.ErrDeadlineExceeded, "Get from a node that never answers: the read deadline")
				return err
			},
			want: mcwire.Unreachable,
		},
		{name: "io.EOF", err: func(*testing.T) error { return io.EOF }, want: mcwire.Unreachable},
		{name: "io.ErrUnexpectedEOF", err: func(*testing.T) error { return io.ErrUnexpectedEOF }, want: mcwire.Unreachable},
		{
			name: "ECONNRESET in *net.OpError",
			err: func(*testing.T) error {
				return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
			},
			want: mcwire.Unreachable,
		},
		{
			name: "*memcache.ConnectTimeoutError",
			err: func(*testing.T) error {
				return &memcache.ConnectTimeoutError{Addr: &net.TCPAddr{IP: net.IPv4(10, 255, 255, 1), Port: 11211}}
			},
			want: mcwire.Unreachable,
		},
		{
			name:     "SERVER_ERROR object too large",
			err:      func(t *testing.T) error { return replyTo(t, "SERVER_ERROR object too large for cache") },
			want:     mcwire.Refused,
			tooLarge: true,
		},
		{
			name: "SERVER_ERROR out of memory",
			err:  func(t *testing.T) error { return replyTo(t, "SERVER_ERROR out of memory storing object") },
			want: mcwire.Refused,
		},
		{
			name: "ErrMalformedKey",
			err: func(t *testing.T) error {
				// gomemcache checks the key before it dials: a closed port
				// shows that nothing was sent.
				n := newNode(t, closedPort(t), waitFor, 1, alwaysUp)
				_, err := n.Get("bad key")
				require.ErrorIs(t, err, memcache.ErrMalformedKey, "Get of a key with a space")
				return err
			},
			want: mcwire.Refused,
		},
		{name: "unknown reply", err: func(*testing.T) error { return errors.New("memcache: unexpected response line") }, want: mcwire.Refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err(t)
			assertClass(t, err, tt.want, "%s", tt.name)
			assert.Equal(t, tt.tooLarge, errors.Is(err, mcwire.ErrTooLarge),
				"errors.Is(%v, ErrTooLarge): want %v, only for memcached's refusal of an oversized item", err, tt.tooLarge)
		})
	}
}

// Classify goes by identity, never by text: errors that read like network
// failures, a miss or a closed Node but are none of them are replies the
// node gave, so Refused.
func TestClassifyIgnoresErrorText(t *testing.T) {
	for _, text := range []string{
		"dial tcp: connection refused",
		"read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout",
		"EOF",
		"connection reset by peer",
		memcache.ErrCacheMiss.Error(),
		mcwire.ErrClosed.Error(),
		mcwire.ErrNotSent.Error(),
	} {
		err := errors.New(text)
		assertClass(t, err, mcwire.Refused, "errors.New(%q) only reads like a network, miss or closed error: the node answered it", text)
	}
}
