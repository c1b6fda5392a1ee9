package mcsession

import (
	"bufio"
	"net"
	"net/http"
	"sync/atomic"
)

// responseWriter wraps a handler's http.ResponseWriter so the session
// cookie, Vary: Cookie and (with SyncBackup) the backup are done before the
// first byte of the response. It unwraps for http.ResponseController, so
// Flush, Hijack and deadlines keep working, and has Flush and Hijack methods
// of its own for code that asserts the old interfaces.
type responseWriter struct {
	http.ResponseWriter
	rq      *request
	started atomic.Bool // the status line has been written (or is being written)
}

// start runs the pre-response work once, before the status line.
func (w *responseWriter) start() {
	if w.started.CompareAndSwap(false, true) {
		w.rq.beforeResponse()
	}
}

// WriteHeader implements http.ResponseWriter. Informational (1xx) headers
// pass through without starting the response, except 101 Switching
// Protocols, which ends it.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.start()
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *responseWriter) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher. It does nothing if the wrapped writer
// cannot flush.
func (w *responseWriter) Flush() {
	w.start()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker. The session cookie cannot be sent on a
// hijacked connection; session changes are still backed up.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.started.Store(true)
	}
	return c, rw, err
}
