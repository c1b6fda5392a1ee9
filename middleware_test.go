package mcsession

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
	if !sawSession || !sawParent || !sawDerived || !sawCancel {
		t.Fatalf("handler saw session %v, parent value %v, session through a derived context %v, parent cancellation %v; want all true",
			sawSession, sawParent, sawDerived, sawCancel)
	}
}
