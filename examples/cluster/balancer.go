package main

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// balancer is a DEMO sticky load balancer, not a product: it exists so the
// cluster demo needs nothing but Go. Use HAProxy or nginx in production
// (see examples/haproxy and the README).
//
// It routes a request by the route part of its session cookie (the last
// dot-separated part of the ID) to the instance with that route while that
// instance is up; requests without a session, or whose instance is down, go
// round-robin to the instances that are up. A request that cannot connect
// to its instance is sent to the next one (redispatch): nothing was sent,
// so even a POST is safe to resend.
type balancer struct {
	cookie    string
	transport *http.Transport
	next      atomic.Uint64 // round-robin position

	// mu guards backends.
	mu       sync.Mutex
	backends []*backend
}

// backend is one application instance behind the balancer.
type backend struct {
	route string
	addr  string
	up    atomic.Bool
	fails int // consecutive failed checks; used by checkLoop only
	oks   int // consecutive good checks; used by checkLoop only
}

// A check must fail (or pass) this many times in a row to mark an instance
// down (or up), so one slow answer under load does not move its sessions.
const checkRise, checkFall = 2, 2

func newBalancer(cookie string) *balancer {
	return &balancer{
		cookie: cookie,
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// add registers an instance, considered up until a check says otherwise.
func (lb *balancer) add(route, addr string) {
	b := &backend{route: route, addr: addr}
	b.up.Store(true)
	lb.mu.Lock()
	lb.backends = append(lb.backends, b)
	lb.mu.Unlock()
}

// candidates returns the instances to try for r, in order: the sticky one
// first if it is up, then the others that are up, round-robin, and last
// those marked down (a check may be wrong; a refused dial just moves on).
func (lb *balancer) candidates(r *http.Request) []*backend {
	lb.mu.Lock()
	all := append([]*backend(nil), lb.backends...)
	lb.mu.Unlock()
	var list []*backend
	route := lb.routeOf(r)
	for _, b := range all {
		if b.route == route && b.up.Load() {
			list = append(list, b)
		}
	}
	start := int(lb.next.Add(1))
	for _, up := range []bool{true, false} {
		for i := range all {
			b := all[(start+i)%len(all)]
			if b.up.Load() == up && (b.route != route || !up) {
				list = append(list, b)
			}
		}
	}
	return list
}

// routeOf returns the route part of r's session cookie, or "".
func (lb *balancer) routeOf(r *http.Request) string {
	c, err := r.Cookie(lb.cookie)
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 {
		return ""
	}
	return c.Value[i+1:]
}

// ServeHTTP proxies r to the first instance that accepts a connection.
func (lb *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "demo balancer: reading request: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, b := range lb.candidates(r) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", b.addr
		out.Body = io.NopCloser(strings.NewReader(string(body)))
		out.Header.Set("X-Forwarded-For", r.RemoteAddr)
		resp, err := lb.transport.RoundTrip(out)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				b.up.Store(false) // refused: down until the next check says up
				continue          // nothing was sent: redispatch
			}
			// The instance died with the request in flight: whether it
			// was processed is unknown, so it is not resent.
			http.Error(w, "demo balancer: instance "+b.route+" failed: "+err.Error(), http.StatusBadGateway)
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "demo balancer: no instance is up", http.StatusServiceUnavailable)
}

// checkLoop probes every instance's /healthz every interval until ctx is
// done, marking each up or down after checkRise or checkFall results in a
// row.
func (lb *balancer) checkLoop(ctx context.Context, interval time.Duration) {
	client := &http.Client{Transport: lb.transport, Timeout: time.Second}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lb.mu.Lock()
		all := append([]*backend(nil), lb.backends...)
		lb.mu.Unlock()
		for _, b := range all {
			resp, err := client.Get("http://" + b.addr + "/healthz")
			up := err == nil && resp.StatusCode == http.StatusOK
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if up {
				b.oks, b.fails = b.oks+1, 0
			} else {
				b.oks, b.fails = 0, b.fails+1
			}
			switch {
			case b.oks >= checkRise && !b.up.Load():
				b.up.Store(true)
				log.Printf("demo balancer: instance %s is up", b.route)
			case b.fails >= checkFall && b.up.Load():
				b.up.Store(false)
				log.Printf("demo balancer: instance %s is down", b.route)
			}
		}
	}
}
