package mcsession

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseID(t *testing.T) {
	node32 := strings.Repeat("n", 32)
	route64 := strings.Repeat("r", MaxRouteLen)
	tests := []struct {
		name     string
		in       string
		withNode bool
		want     sessionID
		ok       bool
	}{
		{"bare random", testRandom, false, sessionID{random: testRandom}, true},
		{"random and route", testRandom + ".app-1_x", false, sessionID{random: testRandom, route: "app-1_x"}, true},
		{"random and node", testRandom + ".n1", true, sessionID{random: testRandom, node: "n1"}, true},
		{"random, node and route", testRandom + ".n1.app1", true, sessionID{testRandom, "n1", "app1"}, true},
		{"uppercase node", testRandom + ".Node_2.app1", true, sessionID{testRandom, "Node_2", "app1"}, true},
		{"longest node and route", testRandom + "." + node32 + "." + route64, true, sessionID{testRandom, node32, route64}, true},
		{"longest route without node", testRandom + "." + route64, false, sessionID{random: testRandom, route: route64}, true},

		{"empty", "", false, sessionID{}, false},
		{"empty with node", "", true, sessionID{}, false},
		{"short random", testRandom[:31], false, sessionID{}, false},
		{"long random", testRandom + "0", false, sessionID{}, false},
		{"uppercase hex", strings.ToUpper(testRandom), false, sessionID{}, false},
		{"non-hex", "g" + testRandom[1:], false, sessionID{}, false},
		{"just below 0", "/" + testRandom[1:], false, sessionID{}, false},
		{"just above 9", testRandom[:31] + ":", false, sessionID{}, false},
		{"just below a", testRandom[:10] + "`" + testRandom[11:], false, sessionID{}, false},
		{"high byte", testRandom[:5] + "\xe1" + testRandom[6:], false, sessionID{}, false},
		{"control character", testRandom[:16] + "\x00" + testRandom[17:], false, sessionID{}, false},
		{"control character in route", testRandom + ".ap\tp", false, sessionID{}, false},
		{"space in node", testRandom + ".n 1", true, sessionID{}, false},
		{"missing node", testRandom, true, sessionID{}, false},
		{"empty node", testRandom + "..app1", true, sessionID{}, false},
		{"dot only", testRandom + ".", true, sessionID{}, false},
		{"trailing dot", testRandom + ".n1.", true, sessionID{}, false},
		{"trailing dot without node", testRandom + ".", false, sessionID{}, false},
		{"extra dot", testRandom + ".n1.app1.x", true, sessionID{}, false},
		{"extra dot without node", testRandom + ".a.b", false, sessionID{}, false},
		{"dash in node", testRandom + ".n-1.app1", true, sessionID{}, false},
		{"node too long", testRandom + "." + node32 + "x.app1", true, sessionID{}, false},
		{"route too long", testRandom + ".n1." + route64 + "x", true, sessionID{}, false},
		{"route too long without node", testRandom + "." + route64 + "x", false, sessionID{}, false},
		{"oversized", testRandom + "." + strings.Repeat("a", 5000), false, sessionID{}, false},
		{"quoted", `"` + testRandom + `"`, false, sessionID{}, false},
		{"non-ASCII", testRandom + ".n1.äpp", true, sessionID{}, false},
		{"separator not a dot", testRandom + "-n1", true, sessionID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseID(tt.in, tt.withNode)
			require.Equal(t, tt.ok, ok, "parseID(%q, %v) = %+v, %v, want %+v, %v", tt.in, tt.withNode, got, ok, tt.want, tt.ok)
			if ok {
				require.Equal(t, tt.want, got, "parseID(%q, %v) = %+v, %v, want %+v, %v", tt.in, tt.withNode, got, ok, tt.want, tt.ok)
				s := got.String()
				assert.Equal(t, tt.in, s, "parseID(%q).String() = %q, want %q", tt.in, s, tt.in)
				split := splitID(tt.in, tt.withNode)
				assert.Equal(t, got, split, "splitID(%q, %v) = %+v, want %+v, as parseID", tt.in, tt.withNode, split, got)
			}
		})
	}
}

func TestParseIDAllocatesNothing(t *testing.T) {
	id := testRandom + ".n1.app1"
	allocs := testing.AllocsPerRun(100, func() {
		// if, not require.True(t, ok, ...): passing the message's
		// arguments would allocate on every run, failure or not.
		if _, ok := parseID(id, true); !ok {
			require.FailNow(t, "parseID rejected a valid ID", "parseID(%q, true) = _, false, want it accepted", id)
		}
	})
	assert.Zero(t, allocs, "parseID(%q, true) allocates %v times, want 0", id, allocs)
}

func TestSessionIDString(t *testing.T) {
	tests := []struct {
		id   sessionID
		want string
	}{
		{sessionID{random: testRandom}, testRandom},
		{sessionID{random: testRandom, node: "n1"}, testRandom + ".n1"},
		{sessionID{random: testRandom, route: "app1"}, testRandom + ".app1"},
		{sessionID{testRandom, "n1", "app1"}, testRandom + ".n1.app1"},
	}
	for _, tt := range tests {
		got := tt.id.String()
		assert.Equal(t, tt.want, got, "%+v.String() = %q, want %q", tt.id, got, tt.want)
	}
}

func TestNewRandom(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		r := newRandom()
		_, ok := parseID(r, false)
		require.True(t, ok, "newRandom() = %q, not a valid ID", r)
		assert.False(t, seen[r], "newRandom() = %q twice", r)
		seen[r] = true
		// A version 4 UUID in hex: version nibble 4, variant bits 10.
		assert.Equal(t, byte('4'), r[12], "newRandom() = %q: version digit %c, want 4", r, r[12])
		assert.Contains(t, "89ab", string(r[16]), "newRandom() = %q: variant digit %c, want one of 89ab", r, r[16])
	}
}

func TestMemcacheKey(t *testing.T) {
	ids := []string{
		testRandom,
		testRandom + ".n1.app1",
		testRandom + ".n2.app1",
		testRandom + ".n1.app2",
		"not an ID at all \x00\r\n",
	}
	seen := make(map[string]string)
	for _, id := range ids {
		key := memcacheKey(DefaultKeyPrefix, id)
		want := len(DefaultKeyPrefix) + keyHexLen
		assert.Equal(t, want, len(key), "len(memcacheKey(%q)) = %d, want %d", id, len(key), want)
		assert.True(t, strings.HasPrefix(key, DefaultKeyPrefix), "memcacheKey(%q) = %q, want prefix %q", id, key, DefaultKeyPrefix)
		assert.True(t, legalKey(key), "memcacheKey(%q) = %q, want a legal memcached key", id, key)
		assert.NotContains(t, key, testRandom[:8], "memcacheKey(%q) = %q, reveals the ID, want a hash", id, key)
		other, dup := seen[key]
		assert.False(t, dup, "memcacheKey(%q) = memcacheKey(%q) = %q, want different keys for different IDs", id, other, key)
		seen[key] = id
		again := memcacheKey(DefaultKeyPrefix, id)
		assert.Equal(t, key, again, "memcacheKey(%q) = %q, then %q, want the same key every time", id, key, again)
	}
}

func TestLegalKey(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"mcs:", true},
		{"a-b_c:d/e", true},
		{"", true},
		{strings.Repeat("k", 250), true},
		{strings.Repeat("k", 251), false},
		{"a b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\x00b", false},
	}
	for _, tt := range tests {
		got := legalKey(tt.in)
		assert.Equal(t, tt.want, got, "legalKey(%q) = %v, want %v", tt.in, got, tt.want)
	}
}

// FuzzParseID checks that parseID never panics, that every ID it accepts
// has the documented shape, formats back to the same string and splits the
// same with splitID, and that its memcached key is legal.
func FuzzParseID(f *testing.F) {
	f.Add(testRandom, false)
	f.Add(testRandom+".n1.app1", true)
	f.Add(testRandom+".app1", false)
	f.Add(testRandom+".n1..", true)
	f.Add(strings.ToUpper(testRandom)+".n1", true)
	f.Fuzz(func(t *testing.T, s string, withNode bool) {
		id, ok := parseID(s, withNode)
		if !ok {
			return
		}
		str := id.String()
		require.Equal(t, s, str, "parseID(%q, %v).String() = %q, want %q", s, withNode, str, s)
		split := splitID(s, withNode)
		require.Equal(t, id, split, "splitID(%q, %v) = %+v, want parseID's %+v", s, withNode, split, id)
		require.True(t, len(s) >= randomLen && len(s) <= maxIDLen,
			"parseID(%q, %v) accepted %d bytes, want %d..%d", s, withNode, len(s), randomLen, maxIDLen)
		require.True(t, len(id.random) == randomLen && strings.Trim(id.random, "0123456789abcdef") == "",
			"parseID(%q, %v).random = %q, want %d lowercase hex digits", s, withNode, id.random, randomLen)
		require.True(t, (id.node != "") == withNode && len(id.node) <= 32,
			"parseID(%q, %v).node = %q, want a node of at most 32 bytes exactly when withNode", s, withNode, id.node)
		require.True(t, len(id.route) <= MaxRouteLen && !strings.Contains(id.node+id.route, "."),
			"parseID(%q, %v) = %+v, want a route of at most %d bytes and no dot in node or route", s, withNode, id, MaxRouteLen)
		if id.route != "" {
			require.NoError(t, checkRoute(id.route), "parseID(%q, %v).route = %q, want a valid Route", s, withNode, id.route)
		}
		key := memcacheKey(DefaultKeyPrefix, s)
		require.True(t, legalKey(key), "memcacheKey(%q) = %q, want a legal key", s, key)
	})
}
