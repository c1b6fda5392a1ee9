package mcsession

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Manager's counters and gauges. Counters only grow
// over the Manager's life. It is a plain struct, so it can be published with
// expvar.Func or logged as it is.
type Stats struct {
	Requests            uint64 // requests through the middleware, ignored ones included
	RequestsIgnored     uint64 // requests skipped by Config.Ignore
	RequestsWithSession uint64 // requests whose handler used an existing or new session

	SessionsCreated     uint64 // new sessions
	SessionsExpired     uint64 // sessions ended by IdleTimeout or Lifetime
	SessionsInvalidated uint64 // sessions ended by Invalidate
	SessionsEvicted     uint64 // sessions ended to stay within Config.MaxSessions (those whose client never came back first, then the least recently used)
	SessionsDropped     uint64 // sessions dropped from memory to stay within Config.MaxSessions, safe in memcached: loaded again at their next request
	LocalSessions       int    // sessions held in this process now, with ended ones whose backup is still being deleted

	Takeovers   uint64 // sessions loaded from memcached after their instance died
	Relocations uint64 // sessions moved to another node because theirs was down
	Failbacks   uint64 // local sessions replaced by a newer copy another instance wrote since (the balancer sent the client back)

	NodeRestarts     uint64 // memcached nodes found restarted (empty) by the periodic check
	SessionsRepaired uint64 // local sessions stored again because memcached lost their copy (a restart found by the check, or a touch that missed)
	LateChanges      uint64 // ID changes made after the response had started (the cookie could not follow)

	ChangesAfterClose uint64 // session changes made after Shutdown or Close: kept in memory, never written to memcached

	BackupsWritten       uint64 // sessions written to memcached (one set per copy)
	CopiesWritten        uint64 // sets of copies that succeeded: BackupsWritten times the copies kept (2 with two or more primary nodes), less the copies that failed
	BackupBatches        uint64 // batches the sets went out in (one write, one read each); CopiesWritten/BackupBatches is the mean batch size
	BackupsSkipped       uint64 // backups found unchanged after a mutable value was read
	BackupsFailed        uint64 // backups that failed, or wrote one of two copies (node down, encoding error); they are retried
	BackupsDropped       uint64 // backups that found the queue full; they are retried
	BackupsTooLarge      uint64 // backups larger than Config.ItemSizeLimit or memcached's -I; kept local only
	BackupsWaitingClient uint64 // first backups of sessions whose client never came back, deferred past Config.UnconfirmedBudget
	Touches              uint64 // touch commands that extended a backup's TTL
	Deletes              uint64 // delete commands for expired, invalidated or renamed sessions
	Tombstones           uint64 // copies marked ended, written when a delete at Invalidate, RenewID or expiry could not reach a node (down)

	LoadsHit       uint64 // local misses found in memcached
	LoadsMiss      uint64 // local misses not in memcached
	LoadsError     uint64 // loads that failed on a node error
	LoadsKnownGone uint64 // loads of an ID found gone within the last 10s, answered without memcached
	ForgedIDs      uint64 // cookies whose ID's MAC (Config.Keys) did not verify: rejected before any lookup
	OpenFailures   uint64 // stored copies that did not open (Config.Keys: an unknown key, tampered, moved to another key, or not sealed); counted as decode errors too
	DecodeErrors   uint64 // stored sessions that could not be decoded (counted as misses too)

	QueueDepth        int // sessions waiting in the async backup queue
	PendingRetries    int // sessions waiting for a retry of a failed or dropped backup
	UnconfirmedStored int // sessions in memcached whose client has not sent their cookie back (at most Config.UnconfirmedBudget)
	Nodes             int // configured memcached nodes
	NodesUp           int // nodes currently considered up

	BackupLatency Latency // time of memcached writes (set, touch, delete)
	LoadLatency   Latency // time of memcached loads (get)
}

// Latency summarises the duration of a kind of operation.
type Latency struct {
	Count uint64
	Mean  time.Duration
	Max   time.Duration
}

// counters are the Manager's live statistics.
type counters struct {
	requests, requestsIgnored, requestsWithSession                atomic.Uint64
	created, expired, invalidated, evicted, dropped               atomic.Uint64
	takeovers, relocations, lateChanges, changesAfterClose        atomic.Uint64
	nodeRestarts, sessionsRepaired                                atomic.Uint64
	backupsWritten, backupsSkipped, backupsFailed, backupsDropped atomic.Uint64
	backupsTooLarge, touches, deletes, backupBatches              atomic.Uint64
	backupsWaitingClient, copiesWritten, tombstones, failbacks    atomic.Uint64
	forgedIDs, openFailures                                       atomic.Uint64
	loadsHit, loadsMiss, loadsError, decodeErrors, loadsKnownGone atomic.Uint64
	backupLatency, loadLatency                                    latency
}

// latency accumulates durations without locks.
type latency struct {
	count, total, max atomic.Int64
}

func (l *latency) observe(d time.Duration) {
	l.count.Add(1)
	l.total.Add(int64(d))
	for {
		old := l.max.Load()
		if int64(d) <= old || l.max.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (l *latency) snapshot() Latency {
	n := l.count.Load()
	s := Latency{Count: uint64(n), Max: time.Duration(l.max.Load())}
	if n > 0 {
		s.Mean = time.Duration(l.total.Load() / n)
	}
	return s
}

// Stats returns a snapshot of the Manager's statistics. It is cheap enough
// to call on every scrape; LocalSessions walks the session map's shards.
func (m *Manager) Stats() Stats {
	c := &m.stats
	s := Stats{
		Requests:             c.requests.Load(),
		RequestsIgnored:      c.requestsIgnored.Load(),
		RequestsWithSession:  c.requestsWithSession.Load(),
		SessionsCreated:      c.created.Load(),
		SessionsExpired:      c.expired.Load(),
		SessionsInvalidated:  c.invalidated.Load(),
		SessionsEvicted:      c.evicted.Load(),
		SessionsDropped:      c.dropped.Load(),
		LocalSessions:        m.sessions.Len(),
		Takeovers:            c.takeovers.Load(),
		Relocations:          c.relocations.Load(),
		Failbacks:            c.failbacks.Load(),
		NodeRestarts:         c.nodeRestarts.Load(),
		SessionsRepaired:     c.sessionsRepaired.Load(),
		LateChanges:          c.lateChanges.Load(),
		ChangesAfterClose:    c.changesAfterClose.Load(),
		BackupsWritten:       c.backupsWritten.Load(),
		CopiesWritten:        c.copiesWritten.Load(),
		BackupsSkipped:       c.backupsSkipped.Load(),
		BackupsFailed:        c.backupsFailed.Load(),
		BackupsDropped:       c.backupsDropped.Load(),
		BackupBatches:        c.backupBatches.Load(),
		BackupsTooLarge:      c.backupsTooLarge.Load(),
		BackupsWaitingClient: c.backupsWaitingClient.Load(),
		Touches:              c.touches.Load(),
		Deletes:              c.deletes.Load(),
		Tombstones:           c.tombstones.Load(),
		LoadsHit:             c.loadsHit.Load(),
		LoadsMiss:            c.loadsMiss.Load(),
		LoadsError:           c.loadsError.Load(),
		LoadsKnownGone:       c.loadsKnownGone.Load(),
		ForgedIDs:            c.forgedIDs.Load(),
		OpenFailures:         c.openFailures.Load(),
		DecodeErrors:         c.decodeErrors.Load(),
		BackupLatency:        c.backupLatency.snapshot(),
		LoadLatency:          c.loadLatency.snapshot(),
	}
	m.replica.addStats(&s)
	return s
}
