package haproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/memcachetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scenario of TestHAProxyFailover.
const (
	shoppers     = 100 // users, each with its own cookie jar
	concurrency  = 20  // users adding at the same time
	addsPerPhase = 3   // items each user adds between two kills

	// scenarioTimeout bounds everything after the processes are up.
	scenarioTimeout = 45 * time.Second
	// requestTimeout bounds one HTTP request.
	requestTimeout = 10 * time.Second
	// addAttempts bounds how often one item is sent again after its add
	// certainly did not land.
	addAttempts = 5
)

// routes are the server names in haproxy.cfg, in order: the instances' routes.
var routes = []string{"app1", "app2", "app3"}

func TestConfigIsValid(t *testing.T) {
	bin := haproxyBinary(t)
	out, err := exec.Command(bin, "-c", "-f", "haproxy.cfg").CombinedOutput()
	require.NoError(t, err, "haproxy -c -f haproxy.cfg failed, want the shipped file valid:\n%s", out)
	assert.False(t, bytes.Contains(out, []byte("WARNING")) || bytes.Contains(out, []byte("ALERT")),
		"haproxy -c -f haproxy.cfg warns, want it silent:\n%s", out)
}

// TestHAProxyFailover is the deployment the README describes, run for real:
// HAProxy with the shipped haproxy.cfg in front of three cart instances with
// synchronous backups to two memcached nodes. Users fill their carts; they
// add more while the instance with most users is killed (SIGKILL, a crash);
// they add more while the memcached node holding most sessions is killed.
// Every cart must then hold exactly what its user added, in order: nothing
// lost, nothing doubled. An add caught by a kill is not simply sent again:
// its instance may have done it before dying, so the user reads the cart to
// learn whether it did (see shopper.add).
//
// The instances run without failover nodes, so sessions spread over both
// nodes: killing one moves about half of them and leaves the other half,
// which must keep their IDs, as a control.
func TestHAProxyFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with HAProxy, memcached and three cart processes; skipped with -short")
	}
	haproxyBin := haproxyBinary(t)
	mc := memcachetest.StartN(t, 2)
	cartBin := buildCart(t)

	nodes := fmt.Sprintf("n1:%s n2:%s", mc[0].Addr(), mc[1].Addr())
	carts := make(map[string]*proc)
	var cartAddrs []string
	for _, route := range routes {
		p := startCart(t, cartBin, route, nodes)
		carts[route] = p
		cartAddrs = append(cartAddrs, p.addr)
	}
	lb := startHAProxy(t, haproxyBin, cartAddrs)
	dump := func() { // on failure: what the processes said
		if !t.Failed() {
			return
		}
		t.Logf("haproxy output (tail):\n%s", tail(lb.out.String(), 40))
		for _, route := range routes {
			t.Logf("%s output (tail):\n%s", route, tail(carts[route].out.String(), 20))
		}
	}
	defer dump()

	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * concurrency}
	defer tr.CloseIdleConnections()
	base := &url.URL{Scheme: "http", Host: lb.addr, Path: "/"}
	users := make([]*shopper, shoppers)
	for i := range users {
		jar, err := cookiejar.New(nil)
		require.NoError(t, err, "cookiejar.New")
		users[i] = &shopper{
			n:      i,
			base:   base,
			client: &http.Client{Jar: jar, Transport: tr, Timeout: requestTimeout},
		}
	}
	start := time.Now()

	// Phase 1: every user starts a cart; the balancer spreads them.
	runPhase(ctx, users, 1, nil, nil)
	checkPhase(t, users, 1)
	for _, s := range users {
		if s.err == nil {
			assert.Len(t, s.ids, 1, "user %d: session IDs %q in phase 1, want one: the cookie is set once and the user stays on its instance", s.n, s.ids)
		}
	}
	before := currentIDs(users)
	victim := mostCommon(before, func(id sessionID) string { return id.route })
	t.Logf("phase 1: %d users on %v; killing instance %s during phase 2", shoppers, countBy(before, func(id sessionID) string { return id.route }), victim)

	// Phase 2: the victim dies while adds are in flight. Until HAProxy's
	// health checks notice, requests for it fail to connect and are
	// redispatched; then its use-server rule is ignored and they are
	// balanced. Either way its users are taken over by the other instances.
	var downAfter time.Duration
	killed := time.Now()
	runPhase(ctx, users, 2, func() {
		killed = time.Now()
		carts[victim].kill(t)
	}, func() {
		assert.NoError(t, waitDown(ctx, lb.statsAddr, victim), "HAProxy did not mark %s down, want its health checks to notice the kill", victim)
		downAfter = time.Since(killed)
	})
	checkPhase(t, users, 2)
	after := currentIDs(users)
	takenOver := 0
	for i, s := range users {
		b, a := before[i], after[i]
		if s.err != nil || b.random == "" {
			continue
		}
		// The node may change: an instance killed between the sets of a
		// session's two copies leaves the newer one on its second node,
		// and the takeover loads that one.
		switch {
		case a.random != b.random:
			assert.Failf(t, "session changed", "user %d: session %s became %s after instance %s died, want the same session", s.n, b, a, victim)
		case b.route == victim && a.route == victim:
			assert.Failf(t, "session not taken over", "user %d: session %s still routed to the dead %s, want another instance's route", s.n, a, victim)
		case b.route == victim:
			takenOver++
		case a.route != b.route:
			assert.Failf(t, "session moved", "user %d: session %s moved to %s, but its instance %s is alive: stickiness broken, want it to stay", s.n, b, a.route, b.route)
		}
	}
	before = after
	deadNode := mostCommon(before, func(id sessionID) string { return id.node })
	t.Logf("phase 2: HAProxy marked %s down %v after its death; %d sessions taken over; sessions per node %v; killing memcached %s during phase 3",
		victim, downAfter.Round(time.Millisecond), takenOver, countBy(before, func(id sessionID) string { return id.node }), deadNode)

	// Phase 3: the node dies while adds are in flight; the sessions backed
	// up on it move to the other one.
	runPhase(ctx, users, 3, mc[nodeIndex(deadNode)].Kill, nil)
	checkPhase(t, users, 3)
	after = currentIDs(users)
	relocated := 0
	for i, s := range users {
		b, a := before[i], after[i]
		if s.err != nil || b.random == "" {
			continue
		}
		switch {
		case a.random != b.random || a.route != b.route:
			assert.Failf(t, "session changed", "user %d: session %s became %s after memcached %s died, want the same session and instance", s.n, b, a, deadNode)
		case b.node == deadNode && a.node == deadNode:
			assert.Failf(t, "session not relocated", "user %d: session %s still names the dead node %s, want the live one", s.n, a, deadNode)
		case b.node == deadNode:
			relocated++
		case a.node != b.node:
			assert.Failf(t, "session moved", "user %d: session %s moved to node %s, but its node %s is alive, want it to stay", s.n, b, a.node, b.node)
		}
	}

	// Every cart, read through HAProxy, holds exactly what its user added.
	intact, damaged, items := checkCarts(ctx, t, users)
	uncertain, failed5xx, readds, mismatched := 0, 0, 0, 0
	for _, s := range users {
		uncertain += s.uncertain
		failed5xx += s.failed5xx
		readds += s.readds
		mismatched += s.idMismatch
	}
	t.Logf("users %d, items added %d, carts intact %d, damaged %d; sessions taken over %d, relocated %d",
		shoppers, items, intact, damaged, takenOver, relocated)
	t.Logf("adds that failed (%d with a 5xx, %d without an answer) and were read back from the cart %d, of which sent again %d; answers whose body names another session ID than their cookie (relocated as the answer started) %d",
		failed5xx, uncertain-failed5xx, uncertain, readds, mismatched)
	t.Logf("haproxy: %s; instances: %s; scenario took %v",
		haproxyCounters(lb.statsAddr), instanceCounters(carts, victim), time.Since(start).Round(time.Millisecond))
	assert.Zero(t, damaged, "%d of %d carts damaged, want none: every cart holds what its user added", damaged, shoppers)
	assert.Positive(t, takenOver, "sessions taken over = %d, want > 0, or killing an instance tested nothing", takenOver)
	assert.Positive(t, relocated, "sessions relocated = %d, want > 0, or killing a memcached node tested nothing", relocated)
}

// shopper is one user with a browser's cookie jar. It records exactly what
// it added, so its cart can be checked. Only one goroutine uses a shopper at
// a time.
type shopper struct {
	n      int
	base   *url.URL // HAProxy's frontend
	client *http.Client

	added      []string // items added, in order
	ids        []string // distinct session cookies seen, in order
	uncertain  int      // adds answered with an error, whose fate was read from the cart
	failed5xx  int      // of those, adds answered with a 5xx (by HAProxy)
	readds     int      // of those, adds that had not landed and were sent again
	idMismatch int      // responses whose session differs from the cookie they set
	err        error    // the first failure; the shopper then stops
}

// cartAnswer is the JSON answer of POST /cart/add and GET /cart.
type cartAnswer struct {
	Session string   `json:"session"`
	Route   string   `json:"route"`
	Items   []string `json:"items"`
}

// send sends one request through HAProxy. A response other than 200 is
// returned as its status with no error; err is for transport failures.
func (s *shopper) send(ctx context.Context, method, target string) (*cartAnswer, int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.base.Host+target, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, nil
	}
	var v cartAnswer
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, 0, fmt.Errorf("%s %s: body %q: %w", method, target, body, err)
	}
	id := s.cookie()
	if len(s.ids) == 0 || s.ids[len(s.ids)-1] != id {
		s.ids = append(s.ids, id)
	}
	if v.Session != id {
		s.idMismatch++
	}
	return &v, resp.StatusCode, nil
}

// cookie returns the session cookie the jar holds for HAProxy's address.
func (s *shopper) cookie() string {
	for _, c := range s.client.Jar.Cookies(s.base) {
		if c.Name == "SESSIONID" {
			return c.Value
		}
	}
	return ""
}

// add adds item to the cart and checks the answer. A POST is never
// repeated blindly: when it fails (no answer, or a 5xx from HAProxy) the
// instance may have added the item before dying, so the cart is read to
// learn whether it did, and the item is sent again only if it did not.
func (s *shopper) add(ctx context.Context, item string) error {
	want := append(slices.Clip(s.added), item)
	target := "/cart/add?item=" + url.QueryEscape(item)
	for range addAttempts {
		v, status, err := s.send(ctx, "POST", target)
		switch {
		case err == nil && status == http.StatusOK:
			if !slices.Equal(v.Items, want) {
				return fmt.Errorf("POST add %s: items %q, want %q", item, v.Items, want)
			}
			s.added = want
			return nil
		case err == nil && status < 500:
			return fmt.Errorf("POST add %s: status %d, want 200", item, status)
		case ctx.Err() != nil:
			return fmt.Errorf("POST add %s: %w", item, ctx.Err())
		}
		s.uncertain++
		if err == nil {
			s.failed5xx++
		}
		got, err := s.cart(ctx)
		if err != nil {
			return fmt.Errorf("POST add %s failed (status %d), then %w", item, status, err)
		}
		switch {
		case slices.Equal(got, want):
			s.added = want
			return nil
		case slices.Equal(got, s.added):
			s.readds++ // it did not land: send it again
		default:
			return fmt.Errorf("POST add %s failed (status %d); then the cart holds %q, want %q or %q", item, status, got, s.added, want)
		}
	}
	return fmt.Errorf("POST add %s: not added in %d attempts", item, addAttempts)
}

// cart returns the cart's items. GET is idempotent, so it is repeated on
// a transport error or a 5xx until ctx is done.
func (s *shopper) cart(ctx context.Context) ([]string, error) {
	for {
		v, status, err := s.send(ctx, "GET", "/cart")
		if err == nil && status == http.StatusOK {
			return v.Items, nil
		}
		if err == nil && status < 500 {
			return nil, fmt.Errorf("GET /cart: status %d, want 200", status)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("GET /cart: %v (last: status %d, %v)", ctx.Err(), status, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runPhase lets every shopper that has not failed add addsPerPhase items,
// one per round, concurrency of them at a time. Failures are recorded in the
// shoppers. If kill is not nil, a worker calls it in the first round once a
// third of the shoppers have added, so it strikes while other adds are in
// flight; then settle, if not nil, is called before the second round. The
// later rounds give every shopper at least one add after the kill, so every
// session touched by the failure has recovered before the next phase.
func runPhase(ctx context.Context, users []*shopper, phase int, kill, settle func()) {
	for round := range addsPerPhase {
		if round == 1 && settle != nil {
			settle()
		}
		var added atomic.Int64
		work := make(chan *shopper)
		var wg sync.WaitGroup
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range work {
					item := fmt.Sprintf("u%03d-p%d-%d", s.n, phase, round)
					if err := s.add(ctx, item); err != nil {
						s.err = fmt.Errorf("phase %d: %w", phase, err)
					}
					if kill != nil && round == 0 && added.Add(1) == shoppers/3 {
						kill()
					}
				}
			}()
		}
		for _, s := range users {
			if s.err == nil {
				work <- s
			}
		}
		close(work)
		wg.Wait()
	}
}

// checkPhase reports the shoppers that failed in phase, the first five in
// full.
func checkPhase(t *testing.T, users []*shopper, phase int) {
	t.Helper()
	failed := 0
	for _, s := range users {
		if s.err != nil && strings.HasPrefix(s.err.Error(), fmt.Sprintf("phase %d:", phase)) {
			if failed++; failed <= 5 {
				assert.NoError(t, s.err, "user %d failed, want every add of phase %d to land", s.n, phase)
			}
		}
	}
	assert.LessOrEqual(t, failed, 5, "%d users failed in phase %d (five shown), want none", failed, phase)
}

// checkCarts reads every cart through HAProxy and compares it with what its
// user added. It returns the counts of intact and damaged carts and of
// items added.
func checkCarts(ctx context.Context, t *testing.T, users []*shopper) (intact, damaged, items int) {
	t.Helper()
	got := make([][]string, len(users))
	errs := make([]error, len(users))
	work := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				got[i], errs[i] = users[i].cart(ctx)
			}
		}()
	}
	for i := range users {
		work <- i
	}
	close(work)
	wg.Wait()

	for i, s := range users {
		items += len(s.added)
		switch {
		case errs[i] != nil:
			if damaged++; damaged <= 5 {
				assert.NoError(t, errs[i], "user %d: GET /cart failed, want the cart", s.n)
			}
		case s.err != nil || !slices.Equal(got[i], s.added):
			if damaged++; damaged <= 5 {
				assert.Failf(t, "cart damaged", "user %d: GET /cart = %q, want %q (sessions %q; the user's last error: %v)", s.n, got[i], s.added, s.ids, s.err)
			}
		default:
			intact++
		}
	}
	return intact, damaged, items
}

// sessionID is a parsed session ID: <random>.<node>.<route>.
type sessionID struct{ random, node, route string }

func (id sessionID) String() string { return id.random + "." + id.node + "." + id.route }

func parseID(s string) sessionID {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return sessionID{}
	}
	return sessionID{parts[0], parts[1], parts[2]}
}

// currentIDs returns every shopper's session ID, from its cookie jar.
func currentIDs(users []*shopper) []sessionID {
	ids := make([]sessionID, len(users))
	for i, s := range users {
		ids[i] = parseID(s.cookie())
	}
	return ids
}

// countBy counts ids by a key; IDs that did not parse are left out.
func countBy(ids []sessionID, key func(sessionID) string) map[string]int {
	counts := make(map[string]int)
	for _, id := range ids {
		if id.random != "" {
			counts[key(id)]++
		}
	}
	return counts
}

// mostCommon returns the key most ids share, the first in sort order on a
// tie, so the choice is deterministic.
func mostCommon(ids []sessionID, key func(sessionID) string) string {
	counts := countBy(ids, key)
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best := ""
	for _, k := range keys {
		if best == "" || counts[k] > counts[best] {
			best = k
		}
	}
	return best
}

// nodeIndex maps a node id n1, n2 to its index in the memcached list.
func nodeIndex(node string) int {
	switch node {
	case "n1":
		return 0
	case "n2":
		return 1
	}
	panic("unknown node " + node)
}

// haproxyCounters summarises the backend's retries and redispatches.
func haproxyCounters(statsAddr string) string {
	rows, err := readStats(statsAddr)
	if err != nil {
		return err.Error()
	}
	var fe, be map[string]string
	for _, r := range rows {
		switch {
		case r["pxname"] == "shop" && r["svname"] == "FRONTEND":
			fe = r
		case r["pxname"] == "carts" && r["svname"] == "BACKEND":
			be = r
		}
	}
	if fe == nil || be == nil {
		return "no frontend or backend row in the stats"
	}
	return fmt.Sprintf("requests %s, 5xx answered %s; backend connection errors %s, response errors %s, retries %s, redispatches %s",
		fe["req_tot"], fe["hrsp_5xx"], be["econ"], be["eresp"], be["wretr"], be["wredis"])
}

// instanceCounters summarises the surviving instances' statistics.
func instanceCounters(carts map[string]*proc, dead string) string {
	var parts []string
	for _, route := range routes {
		if route == dead {
			continue
		}
		var st struct{ Takeovers, Relocations, LoadsHit, LoadsMiss, BackupsFailed uint64 }
		client := &http.Client{Timeout: 2 * time.Second}
		resp, err := client.Get("http://" + carts[route].addr + "/stats")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", route, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s takeovers %d relocations %d loads hit %d miss %d backups failed %d",
			route, st.Takeovers, st.Relocations, st.LoadsHit, st.LoadsMiss, st.BackupsFailed))
	}
	return strings.Join(parts, "; ")
}

// waitDown polls the stats page until HAProxy's health checks have marked
// server down.
func waitDown(ctx context.Context, statsAddr, server string) error {
	for {
		rows, err := readStats(statsAddr)
		for _, r := range rows {
			if r["pxname"] == "carts" && r["svname"] == server && strings.HasPrefix(r["status"], "DOWN") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server %s not marked down: %v (last stats error: %v)", server, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
