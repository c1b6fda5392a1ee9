package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcsession/mcsession"
	"github.com/mcsession/mcsession/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newTestApp returns the shop with sessions in process memory, as the
// binary runs without -nodes. The manager is shut down when the test ends.
func newTestApp(t *testing.T, route string) *app {
	t.Helper()
	m, err := mcsession.New(mcsession.Config{Route: route})
	require.NoError(t, err, "mcsession.New(Route: %s) failed, want an in-process manager", route)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, m.Shutdown(ctx), "Shutdown failed, want nil: nothing is pending in process memory")
	})
	return &app{route: route, m: m}
}

// browser drives a handler through httptest the way a browser would: it
// sends back the session cookie it was given, and keeps every response.
type browser struct {
	t      *testing.T
	h      http.Handler
	cookie *http.Cookie // the session cookie, nil before the first one
}

// do sends one request and returns the response, its body read.
func (b *browser) do(method, target string) (*http.Response, string) {
	b.t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	rec := httptest.NewRecorder()
	b.h.ServeHTTP(rec, req)
	resp := rec.Result()
	for _, c := range resp.Cookies() {
		if c.Name == "SESSIONID" {
			b.cookie = c
		}
	}
	return resp, rec.Body.String()
}

// cart sends a request that answers a cart and decodes it; a status other
// than 200 or a body that is not a cart fails the test.
func (b *browser) cart(method, target string) cartView {
	b.t.Helper()
	resp, body := b.do(method, target)
	require.Equal(b.t, http.StatusOK, resp.StatusCode, "%s %s = %d %q, want 200", method, target, resp.StatusCode, body)
	ct := resp.Header.Get("Content-Type")
	assert.Equal(b.t, "application/json", ct, "%s %s: Content-Type = %q, want application/json", method, target, ct)
	var v cartView
	require.NoError(b.t, json.Unmarshal([]byte(body), &v), "%s %s: body %q, want a cart in JSON", method, target, body)
	return v
}

func addURL(item string) string {
	return "/cart/add?item=" + url.QueryEscape(item)
}

func TestAddAndCart(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	var want []string
	var id string
	for _, item := range []string{"apple", "pear", "fig", "apple"} {
		want = append(want, item)
		got := b.cart("POST", addURL(item))
		require.Equal(t, want, got.Items, "POST add %q: items = %q, want %q", item, got.Items, want)
		assert.Equal(t, "app1", got.Route, "POST add %q: route = %q, want app1", item, got.Route)
		if id == "" {
			id = got.Session
		}
		assert.Equal(t, id, got.Session, "POST add %q: session = %q, want %q (unchanged)", item, got.Session, id)
	}
	assert.True(t, strings.HasSuffix(id, ".app1"), "session ID = %q, want it to end in the route .app1", id)

	got := b.cart("GET", "/cart")
	want2 := cartView{Session: id, Route: "app1", Items: want}
	assert.Equal(t, want2, got, "GET /cart = %+v, want %+v", got, want2)
}

func TestCartWithoutSession(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	got := b.cart("GET", "/cart")
	want := cartView{Session: "", Route: "app1", Items: []string{}}
	assert.Equal(t, want, got, `GET /cart = %+v, want {Session:"" Route:app1 Items:[]}`, got)
	assert.NotNil(t, got.Items, "GET /cart: items = null, want [] (an empty list, not null)")
	assert.Nil(t, b.cookie, "GET /cart without a session set cookie %v, want none", b.cookie)
}

func TestAddRejectsBadItem(t *testing.T) {
	tests := []struct {
		name           string
		method, target string
		want           int
	}{
		{"missing", "POST", "/cart/add", http.StatusBadRequest},
		{"empty", "POST", addURL(""), http.StatusBadRequest},
		{"101 bytes", "POST", addURL(strings.Repeat("x", maxItemLen+1)), http.StatusBadRequest},
		{"100 bytes", "POST", addURL(strings.Repeat("x", maxItemLen)), http.StatusOK},
		{"1 byte", "POST", addURL("x"), http.StatusOK},
		{"GET", "GET", addURL("x"), http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestApp(t, "app1")
			b := &browser{t: t, h: a.routes()}
			method, target := tt.method, tt.target
			resp, body := b.do(method, target)
			require.Equal(t, tt.want, resp.StatusCode, "%s %.40s = %d %q, want %d", method, target, resp.StatusCode, body, tt.want)
			if tt.want != http.StatusOK {
				assert.Nil(t, b.cookie, "%s %.40s set cookie %v, want none for a refused item", method, target, b.cookie)
				got := b.cart("GET", "/cart")
				assert.Empty(t, got.Items, "after a refused add, items = %q, want none", got.Items)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	resp, body := b.do("GET", "/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "GET /healthz = %d %q, want 200", resp.StatusCode, body)
	assert.Equal(t, "ok\n", body, "GET /healthz body = %q, want %q", body, "ok\n")
	a.draining.Store(true)
	resp, body = b.do("GET", "/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "GET /healthz while draining = %d %q, want 503: balancers must stop sending", resp.StatusCode, body)
	got := resp.Header.Get("X-Route")
	assert.Equal(t, "app1", got, "GET /healthz: X-Route = %q, want app1", got)
	assert.Nil(t, b.cookie, "GET /healthz set cookie %v, want none", b.cookie)
}

func TestPageShowsItemsEscaped(t *testing.T) {
	a := newTestApp(t, "app2")
	b := &browser{t: t, h: a.routes()}

	resp, body := b.do("GET", "/")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "GET / with no session = %d, want 200", resp.StatusCode)
	for _, want := range []string{"<em>empty</em>", "none yet"} {
		assert.Contains(t, body, want, "GET / with no session does not contain %q, want an empty cart; body:\n%s", want, body)
	}

	const evil = `<script>alert("x")</script>`
	b.cart("POST", addURL("tea"))
	b.cart("POST", addURL(evil))
	resp, body = b.do("GET", "/")
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET / = %d, want 200", resp.StatusCode)
	ct := resp.Header.Get("Content-Type")
	assert.Equal(t, "text/html; charset=utf-8", ct, "GET /: Content-Type = %q, want text/html; charset=utf-8", ct)
	require.NotNil(t, b.cookie, "no session cookie after two adds, want one")
	for _, want := range []string{
		"<li>tea</li>",
		"<li>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</li>",
		"(2 items)",
		"<strong>app2</strong>",
		b.cookie.Value,
	} {
		assert.Contains(t, body, want, "GET / does not contain %q; body:\n%s", want, body)
	}
	assert.NotContains(t, body, "<script>", "GET / contains the item unescaped, want it escaped; body:\n%s", body)
}

func TestFormAddRedirects(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	resp, body := b.do("POST", addURL("tea")+"&then=/")
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "POST add then=/ = %d %q, want 303 to /", resp.StatusCode, body)
	require.Equal(t, "/", resp.Header.Get("Location"), "POST add then=/: Location %q, want /", resp.Header.Get("Location"))
	got := b.cart("GET", "/cart")
	assert.Equal(t, []string{"tea"}, got.Items, "after the form's add, items = %q, want [tea]", got.Items)
}

func TestStatsIsJSON(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}
	b.cart("POST", addURL("tea"))
	b.cart("POST", addURL("milk"))
	b.cookie = nil
	b.cart("POST", addURL("tea")) // a second browser

	resp, body := b.do("GET", "/stats")
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET /stats = %d %q, want 200", resp.StatusCode, body)
	ct := resp.Header.Get("Content-Type")
	assert.Equal(t, "application/json", ct, "GET /stats: Content-Type = %q, want application/json", ct)
	var st mcsession.Stats
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&st), "GET /stats: body %q, want mcsession.Stats in JSON", body)
	assert.EqualValues(t, 2, st.SessionsCreated, "GET /stats: SessionsCreated = %d, want 2 (two browsers)", st.SessionsCreated)
	assert.EqualValues(t, 2, st.LocalSessions, "GET /stats: LocalSessions = %d, want 2", st.LocalSessions)
	assert.EqualValues(t, 3, st.Requests, "GET /stats: Requests = %d, want 3 (probes are not counted)", st.Requests)
}

func TestCookieIssuedOnce(t *testing.T) {
	a := newTestApp(t, "app1")
	h := a.routes()

	send := func(method, target string, c *http.Cookie) *http.Response {
		req := httptest.NewRequest(method, target, nil)
		if c != nil {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	first := send("POST", addURL("tea"), nil).Cookies()
	require.Len(t, first, 1, "first POST add: cookies = %v, want one HttpOnly SESSIONID", first)
	require.Equal(t, "SESSIONID", first[0].Name, "first POST add: cookie %v, want SESSIONID", first[0])
	require.True(t, first[0].HttpOnly, "first POST add: cookie %v, want HttpOnly", first[0])
	for _, req := range []struct{ method, target string }{
		{"POST", addURL("milk")},
		{"GET", "/cart"},
		{"GET", "/"},
		{"POST", addURL("jam")},
	} {
		got := send(req.method, req.target, first[0]).Header.Values("Set-Cookie")
		assert.Empty(t, got, "%s %s with the cookie: Set-Cookie = %q, want none: the cookie is issued once", req.method, req.target, got)
	}
}

// TestSIGTERMDrainsAndExits runs the real binary: SIGTERM must stop it
// promptly and with exit status 0, after it has served a cart.
func TestSIGTERMDrainsAndExits(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGTERM")
	}
	bin := buildCart(t)

	var addr string
	var cmd *exec.Cmd
	var stderr *proctest.Buffer
	var exited chan error
	for try := 0; ; try++ {
		addr = freeAddr(t)
		stderr = &proctest.Buffer{}
		cmd = exec.Command(bin, "-listen", addr, "-route", "app7")
		cmd.Stderr = stderr
		require.NoError(t, cmd.Start(), "start %s failed, want it running", bin)
		exited = make(chan error, 1)
		go func(cmd *exec.Cmd, exited chan<- error) { exited <- cmd.Wait() }(cmd, exited)
		proc := cmd.Process
		t.Cleanup(func() { proc.Kill() }) // fails harmlessly once it has exited

		err := waitHealthy(addr, exited, 10*time.Second)
		if err == nil {
			break
		}
		// Another process may have taken the port between freeAddr and the
		// binary's listen: try another one.
		portTaken := errors.Is(err, errExited) && strings.Contains(stderr.String(), "address already in use")
		require.True(t, portTaken && try < 4, "cart on %s: %v, want it healthy; output:\n%s", addr, err, stderr)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+addr+addURL("tea"), "", nil)
	require.NoError(t, err, "POST add failed, want the cart")
	var v cartView
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	require.NoError(t, err, "POST add: body is not a cart in JSON")
	require.Equal(t, []string{"tea"}, v.Items, "POST add = %+v, want items [tea]", v)
	require.Equal(t, "app7", v.Route, "POST add = %+v, want route app7", v)

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM), "send SIGTERM")

	// While it drains, /healthz fails so balancers stop sending, but the
	// requests that still arrive are served, on connections closed after
	// the response.
	sawDraining := false
	for !sawDraining && time.Since(start) < 5*time.Second {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err != nil {
			break // already stopped listening; reported below
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			sawDraining = true
			assert.True(t, resp.Close, "GET /healthz while draining: no Connection: close, want the connection closed after the response")
		}
	}
	if assert.True(t, sawDraining, "GET /healthz never answered 503 after SIGTERM, want it to while draining") {
		req, err := http.NewRequest("GET", "http://"+addr+"/cart", nil)
		require.NoError(t, err, "build GET /cart")
		req.AddCookie(&http.Cookie{Name: "SESSIONID", Value: v.Session})
		resp, err := client.Do(req)
		if assert.NoError(t, err, "GET /cart while draining failed, want it served") {
			var got cartView
			err := json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			assert.NoError(t, err, "GET /cart while draining: body is not a cart in JSON")
			assert.Equal(t, http.StatusOK, resp.StatusCode, "GET /cart while draining = %d, want 200", resp.StatusCode)
			assert.Equal(t, []string{"tea"}, got.Items, "GET /cart while draining = %+v, want [tea]", got)
		}
	}

	const limit = 5 * time.Second
	select {
	case err := <-exited:
		require.NoError(t, err, "after SIGTERM: exit = %v, want status 0; output:\n%s", err, stderr)
	case <-time.After(limit - time.Since(start)):
		require.FailNow(t, "still running", "still running %v after SIGTERM, want it stopped; output:\n%s", limit, stderr)
	}
	t.Logf("exited 0 %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	out := stderr.String()
	for _, want := range []string{"draining", "stopped"} {
		assert.Contains(t, out, want, "output does not log %q, want it to:\n%s", want, out)
	}
}

// buildCart builds examples/cart into a temporary directory.
func buildCart(t *testing.T) string {
	return proctest.Build(t, "github.com/mcsession/mcsession/examples/cart")
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string { return proctest.FreeAddr(t) }

var errExited = errors.New("process exited")

// waitHealthy polls GET /healthz on addr until it answers 200, the process
// exits (a value on exited, which is put back for the caller), or timeout.
func waitHealthy(addr string, exited chan error, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case err := <-exited:
			exited <- err
			return errors.Join(errExited, err)
		default:
		}
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("no 200 from /healthz within " + timeout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
