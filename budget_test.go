package mcsession

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestBotsDoNotDisplaceUsers pins the budget of sessions whose client never
// came back: a bot that creates sessions and never returns a cookie gets at
// most UnconfirmedBudget copies in memcached; the rest wait for a client
// that never comes. A real user's session, past the budget, is stored as
// soon as its client returns the cookie; and a client that comes back frees
// its place in the budget. (A bot used to get a copy for every session it
// created, until memcached evicted real users' copies.)
func TestBotsDoNotDisplaceUsers(t *testing.T) {
	mc := memcachetest.Start(t)
	const budget, bots = 10, 50
	m := newTestManager(t, Config{Nodes: nodesOf(mc), Route: "a", UnconfirmedBudget: budget})
	var botIDs []string
	for range bots {
		rec := serveSession(m, "", func(s *Session) { s.Set("bot", "1") })
		botIDs = append(botIDs, setCookieValue(t, rec.Result().Header))
	}
	waitIdle(t, m)
	keys, err := mc.Keys()
	require.NoError(t, err, "memcached's keys")
	assert.Len(t, keys, budget, "copies in memcached after %d sessions whose client never came back", bots)
	st := m.Stats()
	assert.Equal(t, budget, st.UnconfirmedStored, "Stats().UnconfirmedStored")
	assert.Equal(t, uint64(bots-budget), st.BackupsWaitingClient, "Stats().BackupsWaitingClient: the first backups past the budget")

	// A real user past the budget: stored once the cookie comes back.
	rec := serveSession(m, "", func(s *Session) { s.Set("user", "alice") })
	user := setCookieValue(t, rec.Result().Header)
	waitIdle(t, m)
	_, found := storedSession(t, mc, user)
	require.False(t, found, "a new session past the budget waits for its client")
	serveSession(m, DefaultCookieName+"="+user, func(s *Session) { s.Get("user") })
	waitIdle(t, m)
	v, found := storedSession(t, mc, user)
	assert.True(t, found, "the user's session once its client came back: stored")
	assert.Equal(t, "alice", v["user"], "the user's stored session")

	// A stored bot session whose client comes back frees a place.
	var stored string
	for _, id := range botIDs {
		if _, found := storedSession(t, mc, id); found {
			stored = id
			break
		}
	}
	require.NotEmpty(t, stored, "some bot session is stored")
	serveSession(m, DefaultCookieName+"="+stored, func(s *Session) { s.Get("bot") })
	assert.Equal(t, budget-1, m.Stats().UnconfirmedStored, "Stats().UnconfirmedStored after a stored session's client came back")
	rec = serveSession(m, "", func(s *Session) { s.Set("bot", "2") })
	next := setCookieValue(t, rec.Result().Header)
	waitIdle(t, m)
	_, found = storedSession(t, mc, next)
	assert.True(t, found, "a new session once a place in the budget is free: stored")
}

// TestSyncBackupStoresFirstChangePastBudget pins that SyncBackup stores a
// new session's first change before the response even past the budget:
// the budget applies to asynchronous backups only.
func TestSyncBackupStoresFirstChangePastBudget(t *testing.T) {
	mc := memcachetest.Start(t)
	m := newTestManager(t, Config{Nodes: nodesOf(mc), Route: "a", UnconfirmedBudget: 1, SyncBackup: true})
	for i := range 3 {
		rec := serveSession(m, "", func(s *Session) { s.Set("k", "v") })
		id := setCookieValue(t, rec.Result().Header)
		_, found := storedSession(t, mc, id)
		assert.True(t, found, "session %d with SyncBackup past a budget of 1: stored before the response", i)
	}
}
