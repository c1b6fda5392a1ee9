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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcsession/mcsession"
	"github.com/mcsession/mcsession/internal/proctest"
)

// newTestApp returns the shop with sessions in process memory, as the
// binary runs without -nodes. The manager is shut down when the test ends.
func newTestApp(t *testing.T, route string) *app {
	t.Helper()
	m, err := mcsession.New(mcsession.Config{Route: route})
	if err != nil {
		t.Fatalf("mcsession.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown = %v, want nil", err)
		}
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
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("%s %s = %d %q, want 200", method, target, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		b.t.Errorf("%s %s: Content-Type = %q, want application/json", method, target, ct)
	}
	var v cartView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		b.t.Fatalf("%s %s: body %q: %v", method, target, body, err)
	}
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
		if !slices.Equal(got.Items, want) {
			t.Fatalf("POST add %q: items = %q, want %q", item, got.Items, want)
		}
		if got.Route != "app1" {
			t.Errorf("POST add %q: route = %q, want app1", item, got.Route)
		}
		if id == "" {
			id = got.Session
		}
		if got.Session != id {
			t.Errorf("POST add %q: session = %q, want %q (unchanged)", item, got.Session, id)
		}
	}
	if !strings.HasSuffix(id, ".app1") {
		t.Errorf("session ID = %q, want it to end in the route .app1", id)
	}

	got := b.cart("GET", "/cart")
	want2 := cartView{Session: id, Route: "app1", Items: want}
	if got.Session != want2.Session || got.Route != want2.Route || !slices.Equal(got.Items, want2.Items) {
		t.Errorf("GET /cart = %+v, want %+v", got, want2)
	}
}

func TestCartWithoutSession(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	got := b.cart("GET", "/cart")
	if got.Session != "" || got.Route != "app1" || got.Items == nil || len(got.Items) != 0 {
		t.Errorf(`GET /cart = %+v, want {Session:"" Route:app1 Items:[]}`, got)
	}
	if b.cookie != nil {
		t.Errorf("GET /cart without a session set cookie %v, want none", b.cookie)
	}
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
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %.40s = %d %q, want %d", method, target, resp.StatusCode, body, tt.want)
			}
			if tt.want != http.StatusOK {
				if b.cookie != nil {
					t.Errorf("%s %.40s set cookie %v, want none for a refused item", method, target, b.cookie)
				}
				if got := b.cart("GET", "/cart"); len(got.Items) != 0 {
					t.Errorf("after a refused add, items = %q, want none", got.Items)
				}
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	resp, body := b.do("GET", "/healthz")
	if resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 %q", resp.StatusCode, body, "ok\n")
	}
	a.draining.Store(true)
	resp, body = b.do("GET", "/healthz")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /healthz while draining = %d %q, want 503", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Route"); got != "app1" {
		t.Errorf("GET /healthz: X-Route = %q, want app1", got)
	}
	if b.cookie != nil {
		t.Errorf("GET /healthz set cookie %v, want none", b.cookie)
	}
}

func TestPageShowsItemsEscaped(t *testing.T) {
	a := newTestApp(t, "app2")
	b := &browser{t: t, h: a.routes()}

	resp, body := b.do("GET", "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<em>empty</em>") || !strings.Contains(body, "none yet") {
		t.Errorf("GET / with no session = %d, want 200 and an empty cart; body:\n%s", resp.StatusCode, body)
	}

	const evil = `<script>alert("x")</script>`
	b.cart("POST", addURL("tea"))
	b.cart("POST", addURL(evil))
	resp, body = b.do("GET", "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET /: Content-Type = %q, want text/html; charset=utf-8", ct)
	}
	for _, want := range []string{
		"<li>tea</li>",
		"<li>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</li>",
		"(2 items)",
		"<strong>app2</strong>",
		b.cookie.Value,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / does not contain %q; body:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("GET / contains the item unescaped; body:\n%s", body)
	}
}

func TestFormAddRedirects(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}

	resp, body := b.do("POST", addURL("tea")+"&then=/")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("POST add then=/ = %d Location %q %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	if got := b.cart("GET", "/cart"); !slices.Equal(got.Items, []string{"tea"}) {
		t.Errorf("after the form's add, items = %q, want [tea]", got.Items)
	}
}

func TestStatsIsJSON(t *testing.T) {
	a := newTestApp(t, "app1")
	b := &browser{t: t, h: a.routes()}
	b.cart("POST", addURL("tea"))
	b.cart("POST", addURL("milk"))
	b.cookie = nil
	b.cart("POST", addURL("tea")) // a second browser

	resp, body := b.do("GET", "/stats")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stats = %d %q, want 200", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /stats: Content-Type = %q, want application/json", ct)
	}
	var st mcsession.Stats
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("GET /stats: body %q is not mcsession.Stats: %v", body, err)
	}
	if st.SessionsCreated != 2 || st.LocalSessions != 2 || st.Requests != 3 {
		t.Errorf("GET /stats = created %d, local %d, requests %d; want 2, 2, 3 (probes are not counted)",
			st.SessionsCreated, st.LocalSessions, st.Requests)
	}
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
	if len(first) != 1 || first[0].Name != "SESSIONID" || !first[0].HttpOnly {
		t.Fatalf("first POST add: cookies = %v, want one HttpOnly SESSIONID", first)
	}
	for _, req := range []struct{ method, target string }{
		{"POST", addURL("milk")},
		{"GET", "/cart"},
		{"GET", "/"},
		{"POST", addURL("jam")},
	} {
		if got := send(req.method, req.target, first[0]).Header.Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("%s %s with the cookie: Set-Cookie = %q, want none", req.method, req.target, got)
		}
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
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
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
		if !errors.Is(err, errExited) || !strings.Contains(stderr.String(), "address already in use") || try == 4 {
			t.Fatalf("cart on %s: %v; output:\n%s", addr, err, stderr)
		}
	}

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+addr+addURL("tea"), "", nil)
	if err != nil {
		t.Fatalf("POST add: %v", err)
	}
	var v cartView
	err = json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if err != nil || !slices.Equal(v.Items, []string{"tea"}) || v.Route != "app7" {
		t.Fatalf("POST add = %+v, %v; want items [tea] on app7", v, err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

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
			if !resp.Close {
				t.Errorf("GET /healthz while draining: no Connection: close")
			}
		}
	}
	if !sawDraining {
		t.Errorf("GET /healthz never answered 503 after SIGTERM")
	} else {
		req, _ := http.NewRequest("GET", "http://"+addr+"/cart", nil)
		req.AddCookie(&http.Cookie{Name: "SESSIONID", Value: v.Session})
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("GET /cart while draining: %v", err)
		} else {
			var got cartView
			err := json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !slices.Equal(got.Items, []string{"tea"}) {
				t.Errorf("GET /cart while draining = %d %+v, %v; want 200 and [tea]", resp.StatusCode, got, err)
			}
		}
	}

	const limit = 5 * time.Second
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("after SIGTERM: exit = %v, want status 0; output:\n%s", err, stderr)
		}
	case <-time.After(limit - time.Since(start)):
		t.Fatalf("still running %v after SIGTERM; output:\n%s", limit, stderr)
	}
	t.Logf("exited 0 %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if out := stderr.String(); !strings.Contains(out, "draining") || !strings.Contains(out, "stopped") {
		t.Errorf("output does not log draining and stopped:\n%s", out)
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
