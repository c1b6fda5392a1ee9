package mcsession

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestSecurityOperationsAreImmediate pins that Invalidate and RenewID make
// the old ID unloadable on every instance before their response starts, in
// async mode too: the very next request with the old cookie, on another
// instance, gets no session. (With async backup the old copy used to stay
// loadable until a worker got to it: 94 of 100 at once.)
func TestSecurityOperationsAreImmediate(t *testing.T) {
	for _, op := range []string{"/invalidate", "/renew"} {
		t.Run(op, func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout}
			a := newInstance(t, cfg)
			cfg.Route = "b"
			b := newInstance(t, cfg)
			const users = 20
			browsers := make([]*browser, users)
			for i := range browsers {
				browsers[i] = newBrowser(t)
				checkSet(t, browsers[i], a, "user", "alice")
			}
			waitIdle(t, a.m)
			for i, br := range browsers {
				oldID := br.sessionID(a)
				code, _ := br.do(a, http.MethodPost, op)
				require.Equal(t, http.StatusOK, code, "user %d: POST %s", i, op)
				attacker := newBrowser(t)
				attacker.setSessionID(b, oldID)
				_, body := attacker.do(b, http.MethodGet, "/get?key=user")
				assert.Empty(t, body, "user %d: GET with the old ID %s on another instance right after POST %s: no session", i, oldID, op)
				if op == "/renew" {
					newID := br.sessionID(a)
					assert.NotEqual(t, oldID, newID, "user %d: the cookie after RenewID", i)
					assert.Equal(t, "alice", mustDo(t, br, a, http.MethodGet, "/get?key=user"), "user %d: the session under its new ID", i)
				}
			}
			if op == "/renew" {
				// The renewed sessions are stored under their new IDs:
				// another instance takes them over after a's crash.
				waitIdle(t, a.m)
				a.crash()
				for i, br := range browsers {
					br.setSessionID(b, br.sessionID(a))
					assert.Equal(t, "alice", mustDo(t, br, b, http.MethodGet, "/get?key=user"), "user %d: the renewed session on b after a crashed", i)
				}
			}
		})
	}
}
