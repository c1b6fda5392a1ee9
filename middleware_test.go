package mcsession

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

type parentKey struct{}

// TestSessionContext checks the context the middleware hands the handler:
// it carries the Session, keeps the parent's values and cancellation, and
// contexts derived from it still find the Session.
func TestSessionContext(t *testing.T) {
	m := newTestManager(t, Config{})
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), parentKey{}, "p"))
	var sawSession, sawParent, sawDerived, sawCancel bool
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		sawSession = FromContext(ctx) != nil
		sawParent = ctx.Value(parentKey{}) == "p"
		derived, stop := context.WithTimeout(ctx, time.Minute)
		defer stop()
		sawDerived = FromContext(derived) == FromContext(ctx)
		cancel()
		select {
		case <-derived.Done():
			sawCancel = true
		case <-time.After(5 * time.Second):
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(parent))
	assert.True(t, sawSession, "FromContext(r.Context()) in the handler = nil, want the request's Session")
	assert.True(t, sawParent, "r.Context().Value(parentKey{}) in the handler != \"p\", want the parent context's value")
	assert.True(t, sawDerived, "FromContext of a context derived from the handler's != FromContext(r.Context()), want the same Session")
	assert.True(t, sawCancel, "derived context not done within 5s of cancelling the parent, want the parent's cancellation to reach it")
}
