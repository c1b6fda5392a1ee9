package mcsession

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewConfigError(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // the field the error must name
	}{
		{"node without port", Config{Nodes: "n1:127.0.0.1"}, "Nodes"},
		{"node with bad port", Config{Nodes: "n1:127.0.0.1:99999"}, "Nodes"},
		{"node with bad id", Config{Nodes: "n-1:127.0.0.1:11211 n2:127.0.0.1:11212"}, "Nodes"},
		{"node id too long", Config{Nodes: strings.Repeat("n", 33) + ":127.0.0.1:11211"}, "Nodes"},
		{"duplicate node id", Config{Nodes: "n1:127.0.0.1:11211 n1:127.0.0.1:11212"}, "Nodes"},
		{"duplicate node address", Config{Nodes: "n1:127.0.0.1:11211 n2:127.0.0.1:11211"}, "Nodes"},
		{"node without host", Config{Nodes: "n1::11211"}, "Nodes"},
		{"failover not in nodes", Config{Nodes: "n1:127.0.0.1:11211", FailoverNodes: "n2"}, "FailoverNodes"},
		{"failover without nodes", Config{FailoverNodes: "n1"}, "FailoverNodes"},
		{"only failover nodes", Config{Nodes: "n1:127.0.0.1:11211", FailoverNodes: "n1"}, "FailoverNodes"},
		{"route with a dot", Config{Route: "app.1"}, "Route"},
		{"route with a space", Config{Route: "app 1"}, "Route"},
		{"route too long", Config{Route: strings.Repeat("r", MaxRouteLen+1)}, "Route"},
		{"negative IdleTimeout", Config{IdleTimeout: -time.Second}, "IdleTimeout"},
		{"negative Lifetime", Config{Lifetime: -time.Second}, "Lifetime"},
		{"negative BackupTimeout", Config{BackupTimeout: -1}, "BackupTimeout"},
		{"negative OperationTimeout", Config{OperationTimeout: -1}, "OperationTimeout"},
		{"negative RetryInterval", Config{RetryInterval: -1}, "RetryInterval"},
		{"negative ProbeInterval", Config{ProbeInterval: -1}, "ProbeInterval"},
		{"negative SweepInterval", Config{SweepInterval: -1}, "SweepInterval"},
		{"IdleTimeout under 1s", Config{IdleTimeout: 999 * time.Millisecond}, "IdleTimeout"},
		{"Lifetime under 1s", Config{Lifetime: 500 * time.Millisecond}, "Lifetime"},
		{"negative BackupWorkers", Config{BackupWorkers: -1}, "BackupWorkers"},
		{"negative BackupQueueSize", Config{BackupQueueSize: -1}, "BackupQueueSize"},
		{"negative ItemSizeLimit", Config{ItemSizeLimit: -1}, "ItemSizeLimit"},
		{"cookie name with space", Config{Cookie: CookieConfig{Name: "my session"}}, "Cookie.Name"},
		{"cookie name with semicolon", Config{Cookie: CookieConfig{Name: "a;b"}}, "Cookie.Name"},
		{"cookie name with equals", Config{Cookie: CookieConfig{Name: "a=b"}}, "Cookie.Name"},
		{"cookie name with control character", Config{Cookie: CookieConfig{Name: "a\x01"}}, "Cookie.Name"},
		{"cookie name non-ASCII", Config{Cookie: CookieConfig{Name: "sé"}}, "Cookie.Name"},
		{"KeyPrefix with space", Config{KeyPrefix: "my app:"}, "KeyPrefix"},
		{"KeyPrefix with newline", Config{KeyPrefix: "app\n"}, "KeyPrefix"},
		{"KeyPrefix too long", Config{KeyPrefix: strings.Repeat("k", 65)}, "KeyPrefix"},
		{"SameSite=None without Secure", Config{Cookie: CookieConfig{SameSite: http.SameSiteNoneMode}}, "Cookie.SameSite"},
		{"Partitioned without Secure", Config{Cookie: CookieConfig{Partitioned: true}}, "Cookie.Partitioned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = slog.New(slog.DiscardHandler)
			m, err := New(tt.cfg)
			if m != nil {
				m.Close()
			}
			var ce *ConfigError
			require.ErrorAs(t, err, &ce, "New(%+v) = %v, want a *ConfigError", tt.cfg, err)
			assert.Nil(t, m, "New(%+v) returned a Manager with error %v, want nil", tt.cfg, err)
			assert.Contains(t, ce.Field, tt.field, "New(%+v) error Field = %q, want %q", tt.cfg, ce.Field, tt.field)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "mcsession: "), "New(%+v) error = %q, want it to start with mcsession: ", tt.cfg, msg)
			assert.Contains(t, msg, "Config."+ce.Field, "New(%+v) error = %q, want it to name Config.%s", tt.cfg, msg, ce.Field)
			assert.NotEmpty(t, ce.Problem, "New(%+v) error Problem = \"\", want what is wrong with %s", tt.cfg, ce.Field)
		})
	}
}

func TestNewValidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"zero", Config{}},
		{"one bare address", Config{Nodes: "127.0.0.1:11211"}},
		{"nodes and failover", Config{Nodes: "n1:127.0.0.1:11211,n2:127.0.0.1:11212", FailoverNodes: "n1", Route: "app-1_b"}},
		{"longest route", Config{Route: strings.Repeat("r", MaxRouteLen)}},
		{"IdleTimeout 1s", Config{IdleTimeout: time.Second, Lifetime: time.Second}},
		{"SameSite=None with Secure", Config{Cookie: CookieConfig{SameSite: http.SameSiteNoneMode, Secure: true}}},
		{"custom cookie and prefix", Config{Cookie: CookieConfig{Name: "__Host-sid"}, KeyPrefix: "shop/sess:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = slog.New(slog.DiscardHandler)
			m, err := New(tt.cfg)
			require.NoError(t, err, "New(%+v) error = %v, want nil", tt.cfg, err)
			m.Close()
		})
	}
}

func TestResolveDefaults(t *testing.T) {
	s, err := resolve(Config{})
	require.NoError(t, err, "resolve(Config{}) error = %v, want nil: the zero Config is valid", err)
	checks := []struct {
		name      string
		got, want any
	}{
		{"IdleTimeout", s.IdleTimeout, DefaultIdleTimeout},
		{"Lifetime", s.Lifetime, time.Duration(0)},
		{"BackupTimeout", s.BackupTimeout, DefaultBackupTimeout},
		{"OperationTimeout", s.OperationTimeout, DefaultOperationTimeout},
		{"RetryInterval", s.RetryInterval, DefaultRetryInterval},
		{"ProbeInterval", s.ProbeInterval, DefaultProbeInterval},
		{"SweepInterval", s.SweepInterval, DefaultSweepInterval},
		{"BackupWorkers", s.BackupWorkers, DefaultBackupWorkers},
		{"BackupQueueSize", s.BackupQueueSize, DefaultBackupQueueSize},
		{"ItemSizeLimit", s.ItemSizeLimit, DefaultItemSizeLimit},
		{"KeyPrefix", s.KeyPrefix, DefaultKeyPrefix},
		{"Cookie.Name", s.Cookie.Name, DefaultCookieName},
		{"Cookie.Path", s.Cookie.Path, DefaultCookiePath},
		{"Cookie.SameSite", s.Cookie.SameSite, http.SameSiteLaxMode},
		{"Transcoder", s.Transcoder, Transcoder(GobTranscoder{})},
		{"Logger", s.Logger, slog.Default()},
		{"nodes", len(s.nodes), 0},
	}
	for _, c := range checks {
		// Compared with ==, not DeepEqual: Logger must be slog.Default()
		// itself, not an equal logger.
		assert.True(t, c.got == c.want, "resolve(Config{}).%s = %v, want %v", c.name, c.got, c.want)
	}

	// A short IdleTimeout sweeps more often than once a minute.
	s, err = resolve(Config{IdleTimeout: 2 * time.Second})
	require.NoError(t, err, "resolve(IdleTimeout 2s) error = %v, want nil", err)
	assert.Equal(t, 500*time.Millisecond, s.SweepInterval, "resolve(IdleTimeout 2s).SweepInterval = %v, want 500ms", s.SweepInterval)
}
