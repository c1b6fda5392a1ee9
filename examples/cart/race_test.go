package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// serveCart sends one request through h, with the session cookie if it is
// not nil, and returns the status, the cart it answered (if it answered
// one) and the session cookie it set, if any. It does not touch t, so it
// can run on any goroutine.
func serveCart(h http.Handler, cookie *http.Cookie, method, target string) (int, cartView, *http.Cookie, error) {
	req := httptest.NewRequest(method, target, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	var set *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == mcsession.DefaultCookieName {
			set = c
		}
	}
	var v cartView
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, v, set, nil
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		return resp.StatusCode, v, set, fmt.Errorf("%s %s: body %q is not a cart: %w", method, target, rec.Body.String(), err)
	}
	return resp.StatusCode, v, set, nil
}

// TestConcurrentAddsToOneCart sends 16 adds of one session at once, as a
// double click or several tabs would. Values read from a session are
// shared by every concurrent request of that session, so an add that
// appended to the stored slice in place raced with the others (-race
// reports it), and an add that copied but did not hold the cart's lock
// could overwrite another's Set and lose its item. The shop copies under
// the lock, which guarantees: no race, every confirmed item kept once, and
// each add's answer is the cart as that add left it, so every answer is a
// prefix of the final cart that ends with its own item.
func TestConcurrentAddsToOneCart(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(t *testing.T) mcsession.Config
	}{
		{"in process", func(t *testing.T) mcsession.Config {
			return mcsession.Config{Route: "app1"}
		}},
		{"SyncBackup to memcached", func(t *testing.T) mcsession.Config {
			return mcsession.Config{Route: "app1", Nodes: "n1:" + memcachetest.Start(t).Addr(), SyncBackup: true}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg(t)
			m, err := mcsession.New(cfg)
			require.NoError(t, err, "mcsession.New(%+v) error = %v, want a Manager", cfg, err)
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := m.Shutdown(ctx)
				assert.NoError(t, err, "Shutdown() = %v, want nil: every backup written", err)
			})
			h := (&app{route: "app1", m: m}).routes()

			// The session every add below shares.
			code, first, cookie, err := serveCart(h, nil, "POST", "/cart/add?item=first")
			require.NoError(t, err, "POST add first: %v", err)
			require.Equal(t, http.StatusOK, code, "POST add first = %d, want 200", code)
			require.NotNil(t, cookie, "POST add first set no session cookie, want one for the adds to share")

			const n = 16
			type answer struct {
				item   string
				code   int
				cart   cartView
				cookie *http.Cookie
				err    error
			}
			answers := make([]answer, n)
			begin := make(chan struct{})
			var wg sync.WaitGroup
			for i := range answers {
				answers[i].item = fmt.Sprintf("item-%02d", i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := &answers[i]
					<-begin // all at once
					a.code, a.cart, a.cookie, a.err = serveCart(h, cookie, "POST", "/cart/add?item="+url.QueryEscape(a.item))
				}()
			}
			close(begin)
			wg.Wait()

			code, final, _, err := serveCart(h, cookie, "GET", "/cart")
			require.NoError(t, err, "GET /cart: %v", err)
			require.Equal(t, http.StatusOK, code, "GET /cart = %d, want 200", code)
			want := []string{"first"}
			for _, a := range answers {
				want = append(want, a.item)
			}
			assert.Equal(t, first.Session, final.Session, "GET /cart: session = %q, want %q (unchanged)", final.Session, first.Session)
			require.NotEmpty(t, final.Items, "GET /cart: items = %q, want %q in any order after first", final.Items, want)
			assert.Equal(t, "first", final.Items[0], "GET /cart: first item = %q, want first: it was added before the others", final.Items[0])
			assert.ElementsMatch(t, want, final.Items, "GET /cart: items = %q, want each of %q once: no add may be lost", final.Items, want)

			for _, a := range answers {
				if !assert.NoError(t, a.err, "POST add %s: %v", a.item, a.err) ||
					!assert.Equal(t, http.StatusOK, a.code, "POST add %s = %d, want 200", a.item, a.code) {
					continue
				}
				assert.Equal(t, first.Session, a.cart.Session, "POST add %s: session = %q, want %q (unchanged)", a.item, a.cart.Session, first.Session)
				assert.Nil(t, a.cookie, "POST add %s set cookie %v, want none: the client's is current", a.item, a.cookie)
				got := a.cart.Items
				assert.True(t, len(got) > 0 && got[len(got)-1] == a.item,
					"POST add %s: items = %q, want them to end with %s: the answer is the cart this add left", a.item, got, a.item)
				assert.True(t, len(got) <= len(final.Items) && slices.Equal(got, final.Items[:len(got)]),
					"POST add %s: items = %q, want a prefix of the final cart %q: adds to one cart happen one after another", a.item, got, final.Items)
			}
		})
	}
}
