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
			if ok != tt.ok || ok && got != tt.want {
				t.Fatalf("parseID(%q, %v) = %+v, %v, want %+v, %v", tt.in, tt.withNode, got, ok, tt.want, tt.ok)
			}
			if ok {
				if s := got.String(); s != tt.in {
					t.Errorf("parseID(%q).String() = %q, want %q", tt.in, s, tt.in)
				}
				if split := splitID(tt.in, tt.withNode); split != got {
					t.Errorf("splitID(%q, %v) = %+v, want %+v", tt.in, tt.withNode, split, got)
				}
			}
		})
	}
}

func TestParseIDAllocatesNothing(t *testing.T) {
	id := testRandom + ".n1.app1"
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := parseID(id, true); !ok {
			t.Fatal("parseID rejected a valid ID")
		}
	})
	if allocs != 0 {
		t.Errorf("parseID allocates %v times, want 0", allocs)
	}
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
		if got := tt.id.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.id, got, tt.want)
		}
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
		if want := len(DefaultKeyPrefix) + keyHexLen; len(key) != want {
			t.Errorf("len(memcacheKey(%q)) = %d, want %d", id, len(key), want)
		}
		if !strings.HasPrefix(key, DefaultKeyPrefix) {
			t.Errorf("memcacheKey(%q) = %q, want prefix %q", id, key, DefaultKeyPrefix)
		}
		if !legalKey(key) {
			t.Errorf("memcacheKey(%q) = %q, not a legal memcached key", id, key)
		}
		if strings.Contains(key, testRandom[:8]) {
			t.Errorf("memcacheKey(%q) = %q, reveals the ID", id, key)
		}
		if other, dup := seen[key]; dup {
			t.Errorf("memcacheKey(%q) = memcacheKey(%q) = %q", id, other, key)
		}
		seen[key] = id
		if again := memcacheKey(DefaultKeyPrefix, id); again != key {
			t.Errorf("memcacheKey(%q) = %q, then %q", id, key, again)
		}
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
		if got := legalKey(tt.in); got != tt.want {
			t.Errorf("legalKey(%q) = %v, want %v", tt.in, got, tt.want)
		}
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
		if got := id.String(); got != s {
			t.Fatalf("parseID(%q, %v).String() = %q, want %q", s, withNode, got, s)
		}
		if got := splitID(s, withNode); got != id {
			t.Fatalf("splitID(%q, %v) = %+v, want parseID's %+v", s, withNode, got, id)
		}
		if len(s) < randomLen || len(s) > maxIDLen {
			t.Fatalf("parseID(%q, %v) accepted %d bytes, want %d..%d", s, withNode, len(s), randomLen, maxIDLen)
		}
		if len(id.random) != randomLen || strings.Trim(id.random, "0123456789abcdef") != "" {
			t.Fatalf("parseID(%q, %v).random = %q, want %d lowercase hex digits", s, withNode, id.random, randomLen)
		}
		if (id.node != "") != withNode || len(id.node) > 32 {
			t.Fatalf("parseID(%q, %v).node = %q", s, withNode, id.node)
		}
		if len(id.route) > MaxRouteLen || strings.Contains(id.node+id.route, ".") {
			t.Fatalf("parseID(%q, %v) = %+v", s, withNode, id)
		}
		if id.route != "" && checkRoute(id.route) != nil {
			t.Fatalf("parseID(%q, %v).route = %q, not a valid Route", s, withNode, id.route)
		}
		if key := memcacheKey(DefaultKeyPrefix, s); !legalKey(key) {
			t.Fatalf("memcacheKey(%q) = %q, not a legal key", s, key)
		}
	})
}
