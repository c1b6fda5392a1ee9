package mcsession

import (
	"context"

	"github.com/mcsession/mcsession/internal/nodespec"
)

// replica is where copies of sessions live outside this process's memory:
// nowhere (inProcess, a Manager without nodes) or on memcached nodes
// (memcacheReplica). The session core (Manager, Session, the middleware)
// calls it at fixed points of a session's life and never asks which one it
// has; a new way of keeping copies (non-sticky mode, say) is a new
// implementation.
type replica interface {
	// withNode reports whether session IDs carry a node part.
	withNode() bool
	// home returns the node part for a new session's random part ("" for none).
	home(random string) string
	// load fetches a session this process does not hold (a takeover).
	load(id sessionID) loaded
	// refresh is called when a request finds e in process memory by a
	// cookie of another instance's route, before it uses e: a newer copy
	// written there replaces e's state. It reports whether e is gone
	// there (ended, or not found where it must be): e must end here too.
	refresh(e *entry, id sessionID) (gone bool)
	// safeElsewhereLocked reports whether e's state is safe outside this
	// process (stored, nothing pending), so that it may be dropped from
	// memory and loaded again later. e.mu is held.
	safeElsewhereLocked(e *entry) bool
	// buriedLocked reports whether e, ended, is covered by a tombstone in
	// memcached, so that its stand-in in the session map may go. e.mu is
	// held.
	buriedLocked(e *entry) bool
	// droppedLocked is called, with e.mu held, when e is dropped from
	// memory (not ended) to stay within Config.MaxSessions.
	droppedLocked(e *entry)
	// usedLocked is called, with e.mu held, when a request finds e in
	// process memory: a session on a node that is down moves.
	usedLocked(e *entry)
	// beforeResponse is called before a response that used e starts.
	beforeResponse(e *entry)
	// release ends a request's use of e (see entry.acquire) and brings the
	// copy up to date if it needs it. mutated says the request read a
	// mutable value.
	release(e *entry, mutated bool)
	// renamed is called after RenewID gave e a new random part; old was
	// its previous one, still e's key in the session map.
	renamed(e *entry, old string)
	// ended is called once e is marked removed; old is its random part.
	// sync says a request's Invalidate asks for the copy to be gone before
	// the response.
	ended(e *entry, old string, sync bool)
	// setNodes replaces the node list (Manager.SetNodes).
	setNodes(specs []nodespec.Node) error
	// flush writes every pending copy, for Shutdown.
	flush(ctx context.Context) error
	// close releases connections; the Manager's goroutines have stopped.
	close()
	// addStats fills in the gauges the replica owns.
	addStats(s *Stats)
}

// loaded is the outcome of a load: the session, or whether it is certainly
// gone (missing, expired or corrupt) rather than out of reach.
type loaded struct {
	e    *entry
	gone bool
}

// inProcess is the replica of a Manager without memcached nodes: there is
// no copy, so a session this process does not hold does not exist.
type inProcess struct{ m *Manager }

func (inProcess) withNode() bool                  { return false }
func (inProcess) home(string) string              { return "" }
func (inProcess) load(sessionID) loaded           { return loaded{gone: true} }
func (inProcess) usedLocked(e *entry)             { e.confirmed = true }
func (inProcess) safeElsewhereLocked(*entry) bool { return false }
func (inProcess) droppedLocked(*entry)            {}
func (inProcess) buriedLocked(*entry) bool        { return false }
func (inProcess) refresh(*entry, sessionID) bool  { return false }
func (inProcess) beforeResponse(*entry)           {}
func (inProcess) release(e *entry, _ bool)        { e.release() }
func (inProcess) flush(context.Context) error     { return nil }
func (inProcess) close()                          {}
func (inProcess) addStats(*Stats)                 {}

func (r inProcess) renamed(e *entry, old string) {
	r.m.sessions.DeleteIf(old, func(x *entry) bool { return x == e })
}

func (r inProcess) ended(e *entry, old string, _ bool) {
	r.m.sessions.DeleteIf(old, func(x *entry) bool { return x == e })
}

func (inProcess) setNodes([]nodespec.Node) error {
	return configError("Nodes", "SetNodes needs a Manager created with nodes: IDs without a node part cannot be backed up")
}
