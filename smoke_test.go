package mcsession

import (
	"testing"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

func TestSmokeInProcess(t *testing.T) {
	in := newInstance(t, Config{})
	b := newBrowser(t)
	if code, body := b.do(in, "POST", "/set?key=a&value=1"); code != 200 || body != "ok" {
		t.Fatalf("set = %d %q", code, body)
	}
	id := b.sessionID(in)
	if len(id) != 32 {
		t.Fatalf("id = %q", id)
	}
	if _, body := b.do(in, "GET", "/get?key=a"); body != "1" {
		t.Fatalf("get = %q", body)
	}
}

func TestSmokeMemcached(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a"}
	a := newInstance(t, cfg)
	cfg.Route = "b"
	bi := newInstance(t, cfg)
	br := newBrowser(t)
	br.do(a, "POST", "/set?key=a&value=1")
	br.do(a, "POST", "/cart/add?item=x")
	waitIdle(t, a.m)
	base0, base1 := servers[0].Ops(t), servers[1].Ops(t)
	for range 5 {
		if _, body := br.do(a, "GET", "/get?key=a"); body != "1" {
			t.Fatalf("get = %q", body)
		}
	}
	waitIdle(t, a.m)
	if d := opsDelta(t, servers[0], base0) + opsDelta(t, servers[1], base1); d != 0 {
		t.Fatalf("read-only requests cost %d memcached ops", d)
	}
	br.do(a, "POST", "/cart/add?item=y")
	waitIdle(t, a.m)
	t.Logf("id after writes: %s stats %+v", br.sessionID(a), a.m.Stats())
	a.crash()
	if _, body := br.do(bi, "GET", "/cart"); body != "x,y" {
		t.Fatalf("cart via b = %q", body)
	}
	t.Logf("id via b: %s stats %+v", br.sessionID(bi), bi.m.Stats())
}
