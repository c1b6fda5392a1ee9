package mcsession

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logInterval is the shortest time between two log records of one kind.
const logInterval = 10 * time.Second

// rateLogger writes warnings to a slog.Logger, at most one record of each
// kind per logInterval, so a dead node or a flood of bad cookies cannot
// flood the log. A record after a quiet spell says how many were suppressed.
type rateLogger struct {
	l *slog.Logger

	// mu guards last and suppressed.
	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newRateLogger(l *slog.Logger) *rateLogger {
	return &rateLogger{l: l, last: make(map[string]time.Time), suppressed: make(map[string]int)}
}

// warn logs msg at warning level unless a record of the same kind was
// logged within logInterval.
func (r *rateLogger) warn(kind, msg string, args ...any) { r.log(slog.LevelWarn, kind, msg, args...) }

// error logs msg at error level, rate limited like warn.
func (r *rateLogger) error(kind, msg string, args ...any) { r.log(slog.LevelError, kind, msg, args...) }

// info logs msg at info level without rate limiting; for rare events such as
// a node coming back.
func (r *rateLogger) info(msg string, args ...any) { r.l.Info(msg, args...) }

func (r *rateLogger) log(level slog.Level, kind, msg string, args ...any) {
	if !r.l.Enabled(context.Background(), level) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last[kind]) < logInterval {
		r.suppressed[kind]++
		r.mu.Unlock()
		return
	}
	r.last[kind] = now
	n := r.suppressed[kind]
	delete(r.suppressed, kind)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.l.Log(context.Background(), level, msg, args...)
}
