package mcsession

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// responseWriter wraps a handler's http.ResponseWriter so the session
// cookie, Vary: Cookie and (with SyncBackup) the backup are done before the
// first byte of the response. It unwraps for http.ResponseController, so
// Flush, Hijack and deadlines keep working, and has Flush and Hijack methods
// of its own for code that asserts the old interfaces. It is an
// io.ReaderFrom, so io.Copy and http.ServeContent keep the server's
// sendfile path through it.
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

// ReadFrom implements io.ReaderFrom. It starts the response, then hands r
// to the wrapped writer's ReadFrom, which net/http's writer turns into
// sendfile for a file. A wrapped writer without ReadFrom gets a plain copy:
// io.Copy sees it is no io.ReaderFrom, so the copy never comes back here.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	w.start()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(w.ResponseWriter, r)
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
