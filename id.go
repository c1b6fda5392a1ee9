package mcsession

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"
	"github.com/mcsession/mcsession/internal/nodespec"
)

// A session ID is "<random>[.<node>][.<route>]":
//
//	random  32 lowercase hex digits: a version 4 UUID (122 random bits
//	        from crypto/rand) without its dashes
//	node    the memcached node holding the backup; present exactly when the
//	        Manager has nodes
//	route   the route of the instance that owns the session, if it has one
//
// The random part alone identifies the session inside a process; the node
// and route parts are routing hints that change when the session moves.
const (
	randomLen = 32
	maxIDLen  = randomLen + 1 + nodespec.MaxIDLen + 1 + MaxRouteLen
	keyHexLen = 40 // 160 bits of SHA-256: collision-free for any real session count
)

// sessionID is a parsed session ID. Its fields are substrings of the string
// parsed, so parsing allocates nothing.
type sessionID struct {
	random, node, route string
}

// String formats the ID.
func (id sessionID) String() string {
	n := len(id.random)
	if id.node != "" {
		n += 1 + len(id.node)
	}
	if id.route != "" {
		n += 1 + len(id.route)
	}
	b := make([]byte, 0, n)
	b = append(b, id.random...)
	if id.node != "" {
		b = append(b, '.')
		b = append(b, id.node...)
	}
	if id.route != "" {
		b = append(b, '.')
		b = append(b, id.route...)
	}
	return string(b)
}

// newRandom returns a fresh random part: a version 4 UUID as 32 hex
// digits. uuid.New reads crypto/rand, which since Go 1.24 never returns an
// error (it crashes the program rather than return weak bytes), so its
// panic on a read error cannot happen.
func newRandom() string {
	u := uuid.New()
	return hex.EncodeToString(u[:])
}

// parseID parses s strictly. withNode says whether the ID must carry a node
// part (the Manager has nodes) or must not. It does not check that the node
// exists. It never allocates and is safe on any input.
func parseID(s string, withNode bool) (sessionID, bool) {
	var id sessionID
	if len(s) < randomLen || len(s) > maxIDLen {
		return id, false
	}
	for i := 0; i < randomLen; i++ {
		if c := s[i]; c-'0' > 9 && c-'a' > 5 { // bytes wrap: one compare per range
			return id, false
		}
	}
	id.random = s[:randomLen]
	rest := s[randomLen:]
	if withNode {
		if len(rest) < 2 || rest[0] != '.' {
			return id, false
		}
		rest = rest[1:]
		i := 0
		for i < len(rest) && rest[i] != '.' {
			if !nodespec.IsWordByte(rest[i]) {
				return id, false
			}
			i++
		}
		if i == 0 || i > nodespec.MaxIDLen {
			return id, false
		}
		id.node, rest = rest[:i], rest[i:]
	}
	if rest == "" {
		return id, true
	}
	if len(rest) < 2 || rest[0] != '.' || len(rest)-1 > MaxRouteLen {
		return id, false
	}
	for i := 1; i < len(rest); i++ {
		if !isRouteByte(rest[i]) {
			return id, false
		}
	}
	id.route = rest[1:]
	return id, true
}

// splitID splits an ID that parseID has accepted with the same withNode,
// without checking it again.
func splitID(s string, withNode bool) sessionID {
	id := sessionID{random: s[:randomLen]}
	rest := s[randomLen:]
	if withNode {
		rest = rest[1:]
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			i = len(rest)
		}
		id.node, rest = rest[:i], rest[i:]
	}
	if rest != "" {
		id.route = rest[1:]
	}
	return id
}

// memcacheKey derives the memcached key of a session from its whole ID, so a
// dump of memcached's keys reveals no usable session ID, and every key is a
// legal memcached key whatever the ID holds.
func memcacheKey(prefix, id string) string {
	sum := sha256.Sum256([]byte(id))
	var b [keyHexLen]byte
	hex.Encode(b[:], sum[:keyHexLen/2])
	return prefix + string(b[:])
}

// legalKey reports whether s may appear in a memcached key: no spaces or
// control characters, at most 250 bytes.
func legalKey(s string) bool {
	if len(s) > 250 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}
