package mcsession

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcsession/mcsession/internal/nodespec"
)

// Defaults used for zero Config fields.
const (
	DefaultIdleTimeout          = 30 * time.Minute
	DefaultCookieName           = "SESSIONID"
	DefaultCookiePath           = "/"
	DefaultBackupTimeout        = time.Second
	DefaultOperationTimeout     = 200 * time.Millisecond
	DefaultKeyPrefix            = "mcs:"
	DefaultBackupWorkers        = 4
	DefaultBackupQueueSize      = 4096
	DefaultItemSizeLimit        = 1024*1024 - 512 // memcached's default -I 1m, less item header and key
	DefaultSweepInterval        = time.Minute
	DefaultRetryInterval        = time.Second
	DefaultProbeInterval        = 250 * time.Millisecond
	DefaultMaxProbeInterval     = 5 * time.Second
	DefaultRestartCheckInterval = 5 * time.Second
	DefaultUnconfirmedBudget    = 10_000
	DefaultCopies               = 2
	DefaultMaxSessions          = 500_000
)

// maxCopies is the most copies of a session kept (Config.Copies).
const maxCopies = 2

// minKeyLen is the shortest secret key accepted in Config.Keys.
const minKeyLen = 32

// MaxRouteLen is the longest Route accepted.
const MaxRouteLen = 64

// Config configures a Manager. The zero value is a valid in-process session
// manager with the documented defaults. Fields are read once, by New.
type Config struct {
	// Nodes lists the memcached nodes that hold session backups, as
	// "id:host:port" entries separated by spaces or commas, for example
	// "n1:10.0.0.1:11211 n2:10.0.0.2:11211". Node ids match [A-Za-z0-9_]+
	// and appear in every session ID. A lone "host:port" is one node with id
	// "n1". Empty (the default) means no memcached: sessions live only in
	// this process.
	Nodes string

	// FailoverNodes lists node ids, separated by spaces or commas, that are
	// used only when no other node is up; typically the node on this
	// instance's own host. Every id must be in Nodes, and at least one node
	// must not be a failover node. Default: none.
	FailoverNodes string

	// Route is this instance's route, the last part of every session ID it
	// issues, for load balancers that stick on it (HAProxy, nginx, mod_jk).
	// Give every instance its own: a user sent back to an instance after
	// another served them (a failback) is recognised by the other route in
	// the cookie, and gets the newer copy instead of the stale local one.
	// It matches [A-Za-z0-9_-]+, at most MaxRouteLen bytes. Default: none.
	Route string

	// IdleTimeout ends a session that has not been used for this long.
	// Its memcached copy lives a little longer (IdleTimeout/8, at most 5
	// minutes, so that reads need only an occasional touch); another
	// instance taking the session over within that grace still finds it.
	// Default: DefaultIdleTimeout (30 minutes).
	IdleTimeout time.Duration

	// Lifetime ends a session this long after it was created, however busy
	// it is. Default: 0, no absolute limit.
	Lifetime time.Duration

	// Cookie configures the session cookie.
	Cookie CookieConfig

	// SyncBackup makes a request that changed its session write it to
	// memcached before the response starts, bounded by BackupTimeout, so the
	// client's next request sees the change on any instance. The request
	// encodes the session itself: if two requests of one session run at once
	// and one changes a value in place, guard that value with your own lock.
	// Requests whose stores to one node overlap share a write (group
	// commit): a store waits for at most the batch already on the wire.
	// Default: false, backups are written asynchronously after the request,
	// by workers that wait until no request is using the session and send
	// the sets of the sessions changed within 2ms of each other to each node
	// in one batch.
	SyncBackup bool

	// BackupTimeout bounds the time one synchronous backup may add to a
	// request, across every node it tries. Default: DefaultBackupTimeout (1s).
	BackupTimeout time.Duration

	// OperationTimeout bounds every memcached call (dial, write and read;
	// a batch of sets is one call). A node that does not answer within it
	// is marked down.
	// Default: DefaultOperationTimeout (200ms).
	OperationTimeout time.Duration

	// Transcoder encodes session values for memcached.
	// Default: GobTranscoder (register your types with gob.Register).
	Transcoder Transcoder

	// KeyPrefix starts every memcached key. At most 64 bytes, no spaces or
	// control characters. Default: DefaultKeyPrefix ("mcs:").
	KeyPrefix string

	// Logger receives warnings and errors. Repeated messages are rate
	// limited. Default: slog.Default().
	Logger *slog.Logger

	// Ignore reports requests that skip all session work, such as static
	// files. FromContext still returns a Session for them, one that never
	// loads or stores anything. Default: nil, no request is ignored.
	Ignore func(*http.Request) bool

	// BackupWorkers is the number of goroutines writing asynchronous
	// backups, each a batch of up to 64 sessions at a time.
	// Default: DefaultBackupWorkers (4).
	BackupWorkers int

	// BackupQueueSize bounds the asynchronous backup queue. A session that
	// finds the queue full is counted in Stats.BackupsDropped and retried
	// every RetryInterval; nothing is lost while the process lives.
	// Default: DefaultBackupQueueSize (4096).
	BackupQueueSize int

	// ItemSizeLimit is the largest encoded session written to memcached;
	// larger sessions stay local only and are counted in
	// Stats.BackupsTooLarge. Match it to memcached's -I option.
	// Default: DefaultItemSizeLimit (1 MB less item overhead).
	ItemSizeLimit int

	// SweepInterval is how often expired local sessions are removed.
	// Default: DefaultSweepInterval (1 minute), or IdleTimeout/4 when that is
	// shorter.
	SweepInterval time.Duration

	// RetryInterval is how often backups that failed, or found the queue
	// full, are tried again. Default: DefaultRetryInterval (1s).
	RetryInterval time.Duration

	// ProbeInterval is the first wait before a down node is probed; the wait
	// doubles after each failed probe up to DefaultMaxProbeInterval. Probes
	// send memcached's "version" command, never get, set, touch or delete,
	// and only to nodes that are down. Default: DefaultProbeInterval (250ms).
	ProbeInterval time.Duration

	// RestartCheckInterval is how often each up node is asked for its
	// process id and uptime (memcached's stats command: one operation per
	// node per interval), so that a node that restarted empty is noticed
	// without waiting for traffic; every local session whose copy was there
	// is then stored again, counted in Stats.NodeRestarts and
	// Stats.SessionsRepaired. Default: DefaultRestartCheckInterval (5s).
	RestartCheckInterval time.Duration

	// UnconfirmedBudget bounds the sessions whose client has not yet sent
	// their cookie back (a bot, a client without cookies) that this
	// instance keeps a copy of in memcached. Past it, such a session's
	// first asynchronous backup waits until its client comes back with the
	// cookie (counted in Stats.BackupsWaitingClient); with SyncBackup the
	// first change is stored before the response anyway. A real user's
	// session is backed up from its first response as long as the budget
	// is not spent, and from its second request in any case.
	// Default: DefaultUnconfirmedBudget (10,000).
	UnconfirmedBudget int

	// Keys are secret keys shared by every instance, each at least 32
	// bytes (generate them with crypto/rand). With Keys, every session ID
	// carries a MAC under a key derived from the first (the cookie is the
	// ID, ".", and 32 hex digits), so a forged or tampered ID is rejected
	// before any memcached operation (counted in Stats.ForgedIDs); every key
	// verifies, so keys rotate by prepending a new one and, once every
	// session signed with the old one has ended, dropping it. IDs issued
	// without Keys, or signed by a dropped key, are no session. The MAC is
	// checked only for sessions this process does not hold, so the sticky
	// path pays nothing. With Keys, every copy stored in memcached is also
	// sealed (AES-256-GCM under a key derived from the first, bound to its
	// memcached key): whoever can read memcached learns nothing of the
	// sessions, and a copy that does not open, or is not sealed, is a miss
	// (Stats.OpenFailures). Setting Keys on a running deployment ends every
	// session (their IDs are unsigned, their copies in clear).
	// Default: none: IDs unsigned, copies in clear, and any well-formed ID
	// costs one memcached get per node the first time it is seen. Set Keys
	// in production; New logs a warning when Nodes is set and Keys is not.
	Keys [][]byte

	// TLS, when set, makes every connection to memcached TLS (memcached
	// 1.5.13 and later, started with -Z and its certificate): gets,
	// touches, deletes, the pipelined sets and the restart check. The
	// server's certificate is verified as usual (set RootCAs for a private
	// CA; ServerName defaults to the node's host). A handshake that fails
	// (an unknown certificate, a node without TLS) marks the node down like
	// a refused connection, logged once with the reason. Default: nil,
	// plain TCP.
	TLS *tls.Config

	// MaxSessions bounds the sessions this process holds in memory. Before
	// one more is created or loaded past it, sessions are taken out:
	// first those safe in memcached (stored, nothing pending: dropped from
	// memory only, counted in Stats.SessionsDropped, and loaded again at
	// their next request), then those whose client never sent the cookie
	// back (a bot's), then the least recently used; those two are ended
	// (Stats.SessionsEvicted). A session in use by a request is never
	// taken. The order is approximate (a sample of 16 sessions is looked
	// at each time). Default: DefaultMaxSessions (500,000: about 450 MB
	// of live heap with a small cart each, 880 B a session, so a 1 GB heap
	// with Go's default GOGC).
	MaxSessions int

	// Copies is how many memcached nodes hold a copy of each session: 2
	// (the node named in the session ID and the next node of the session's
	// ranking) or 1. With two copies a session survives its instance and
	// one memcached node dying together, at the price of two sets per
	// backup instead of one (sent in the same batches). With fewer than two
	// nodes that are not failover nodes, one copy is kept whatever this
	// says. Default: DefaultCopies (2).
	Copies int

	hooks hooks // for tests only (hooks.go)
}

// CookieConfig configures the session cookie. The cookie is always HttpOnly.
type CookieConfig struct {
	// Name of the cookie. Default: DefaultCookieName ("SESSIONID").
	Name string
	// Path of the cookie. Default: DefaultCookiePath ("/").
	Path string
	// Domain of the cookie. Default: none (host only).
	Domain string
	// Secure restricts the cookie to HTTPS; set it behind TLS. Default: false.
	Secure bool
	// SameSite mode. Default: http.SameSiteLaxMode.
	SameSite http.SameSite
	// Persist sets Max-Age to IdleTimeout (and Lifetime), so the cookie
	// survives a browser restart. Default: false, a browser-session cookie.
	Persist bool
	// Partitioned adds the CHIPS Partitioned attribute: a session inside a
	// third-party iframe gets a cookie jar of its own per top-level site,
	// where browsers that block third-party cookies still keep it. It needs
	// Secure (and usually SameSite None). Default: false.
	Partitioned bool
}

// settings is a Config with every default resolved and every field checked.
type settings struct {
	Config
	nodes []nodespec.Node
}

// resolve applies defaults and validates c. The error says which field is
// wrong and why; when several are wrong, it names the first in the order
// checked here.
func resolve(c Config) (settings, error) {
	s := settings{Config: c}
	nodes, err := parseNodes(c.Nodes, c.FailoverNodes)
	if err != nil {
		return s, err
	}
	s.nodes = nodes
	if err := checkRoute(c.Route); err != nil {
		return s, err
	}
	for i, k := range c.Keys {
		if len(k) < minKeyLen {
			return s, configError("Keys", fmt.Sprintf("key %d is %d bytes, want at least %d (from crypto/rand)", i, len(k), minKeyLen))
		}
	}
	if err := s.resolveTimes(); err != nil {
		return s, err
	}
	if err := s.resolveSizes(); err != nil {
		return s, err
	}
	if err := s.resolveBackend(); err != nil {
		return s, err
	}
	if err := s.Cookie.resolve(); err != nil {
		return s, err
	}
	return s, nil
}

// parseNodes parses Nodes and FailoverNodes. Nodes is parsed alone first,
// so that an error in it is reported as one of Nodes, not FailoverNodes.
func parseNodes(nodes, failover string) ([]nodespec.Node, error) {
	if _, err := nodespec.Parse(nodes, ""); err != nil {
		return nil, configError("Nodes", err.Error())
	}
	out, err := nodespec.Parse(nodes, failover)
	if err != nil {
		return nil, configError("FailoverNodes", err.Error())
	}
	return out, nil
}

// resolveTimes defaults and checks the durations.
func (s *settings) resolveTimes() error {
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"IdleTimeout", &s.IdleTimeout, DefaultIdleTimeout},
		{"BackupTimeout", &s.BackupTimeout, DefaultBackupTimeout},
		{"OperationTimeout", &s.OperationTimeout, DefaultOperationTimeout},
		{"RetryInterval", &s.RetryInterval, DefaultRetryInterval},
		{"ProbeInterval", &s.ProbeInterval, DefaultProbeInterval},
		{"RestartCheckInterval", &s.RestartCheckInterval, DefaultRestartCheckInterval},
		{"SweepInterval", &s.SweepInterval, 0}, // resolved below: depends on IdleTimeout
	}
	for _, d := range durations {
		if *d.v < 0 {
			return configError(d.name, "must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if s.SweepInterval == 0 {
		s.SweepInterval = min(DefaultSweepInterval, s.IdleTimeout/4)
	}
	if s.IdleTimeout < time.Second {
		return configError("IdleTimeout", "must be at least 1s")
	}
	if s.Lifetime < 0 {
		return configError("Lifetime", "must not be negative")
	}
	if s.Lifetime != 0 && s.Lifetime < time.Second {
		return configError("Lifetime", "must be at least 1s, or 0 for no limit")
	}
	return nil
}

// resolveSizes defaults and checks the worker count and the size limits.
func (s *settings) resolveSizes() error {
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"BackupWorkers", &s.BackupWorkers, DefaultBackupWorkers},
		{"BackupQueueSize", &s.BackupQueueSize, DefaultBackupQueueSize},
		{"ItemSizeLimit", &s.ItemSizeLimit, DefaultItemSizeLimit},
		{"UnconfirmedBudget", &s.UnconfirmedBudget, DefaultUnconfirmedBudget},
		{"Copies", &s.Copies, DefaultCopies},
		{"MaxSessions", &s.MaxSessions, DefaultMaxSessions},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return configError(n.name, "must not be negative")
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if s.Copies > maxCopies {
		return configError("Copies", fmt.Sprintf("%d: at most %d copies are kept", s.Copies, maxCopies))
	}
	return nil
}

// resolveBackend defaults and checks KeyPrefix, Transcoder and Logger.
func (s *settings) resolveBackend() error {
	if s.KeyPrefix == "" {
		s.KeyPrefix = DefaultKeyPrefix
	}
	if len(s.KeyPrefix) > 64 || !legalKey(s.KeyPrefix) {
		return configError("KeyPrefix", "must be at most 64 bytes without spaces or control characters")
	}
	if s.Transcoder == nil {
		s.Transcoder = GobTranscoder{}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	return nil
}

// resolve defaults and checks the cookie settings.
func (c *CookieConfig) resolve() error {
	if c.Name == "" {
		c.Name = DefaultCookieName
	}
	if !validCookieName(c.Name) {
		return configError("Cookie.Name", fmt.Sprintf("%q is not a valid cookie name", c.Name))
	}
	if c.Path == "" {
		c.Path = DefaultCookiePath
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.SameSite == http.SameSiteNoneMode && !c.Secure {
		return configError("Cookie.SameSite", "SameSite=None needs Secure (browsers reject it otherwise)")
	}
	if c.Partitioned && !c.Secure {
		return configError("Cookie.Partitioned", "Partitioned needs Secure (browsers reject it otherwise)")
	}
	return nil
}

// checkRoute reports whether r is a valid Route: empty, or [A-Za-z0-9_-]+ of
// at most MaxRouteLen bytes.
func checkRoute(r string) error {
	if len(r) > MaxRouteLen {
		return configError("Route", fmt.Sprintf("%q is longer than %d bytes", r, MaxRouteLen))
	}
	for i := 0; i < len(r); i++ {
		if !isRouteByte(r[i]) {
			return configError("Route", fmt.Sprintf("%q may hold only letters, digits, _ and - (no dots: they separate the parts of a session ID)", r))
		}
	}
	return nil
}

func isRouteByte(c byte) bool { return nodespec.IsWordByte(c) || c == '-' }

func validCookieName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || containsByte("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return name != ""
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
