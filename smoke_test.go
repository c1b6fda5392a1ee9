package mcsession

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

func TestSmokeInProcess(t *testing.T) {
	in := newInstance(t, Config{})
	b := newBrowser(t)
	body := mustDo(t, b, in, "POST", "/set?key=a&value=1")
	require.Equal(t, "ok", body, "POST /set?key=a&value=1 = %q, want 200 \"ok\"", body)
	id := b.sessionID(in)
	require.Len(t, id, 32, "session cookie = %q, want a 32-digit ID (no route, no node)", id)
	body = mustDo(t, b, in, "GET", "/get?key=a")
	assert.Equal(t, "1", body, "GET /get?key=a = %q, want \"1\"", body)
}

func TestSmokeMemcached(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a"}
	a := newInstance(t, cfg)
	cfg.Route = "b"
	bi := newInstance(t, cfg)
	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/set?key=a&value=1")
	mustDo(t, br, a, "POST", "/cart/add?item=x")
	waitIdle(t, a.m)
	base0, base1 := servers[0].Ops(t), servers[1].Ops(t)
	for range 5 {
		body := mustDo(t, br, a, "GET", "/get?key=a")
		require.Equal(t, "1", body, "GET /get?key=a on a = %q, want \"1\"", body)
	}
	waitIdle(t, a.m)
	d := opsDelta(t, servers[0], base0) + opsDelta(t, servers[1], base1)
	require.Zero(t, d, "5 read-only requests on a cost %d memcached operations, want 0: a sticky read stays local", d)
	mustDo(t, br, a, "POST", "/cart/add?item=y")
	waitIdle(t, a.m)
	t.Logf("id after writes: %s stats %+v", br.sessionID(a), a.m.Stats())
	a.crash()
	body := mustDo(t, br, bi, "GET", "/cart")
	assert.Equal(t, "x,y", body, "GET /cart on b after a crashed = %q, want \"x,y\" taken over from memcached", body)
	t.Logf("id via b: %s stats %+v", br.sessionID(bi), bi.m.Stats())
}
