package mcsession

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
)

// Signed session IDs. With Config.Keys, the cookie value is the ID followed
// by "." and a MAC of it: 32 lowercase hex digits, the first 128 bits of
// HMAC-SHA-256 under a key derived from the first of Config.Keys. Every
// key verifies, so keys rotate by prepending a new one. The MAC is checked
// only when the local session map misses (a takeover, or a forged ID):
// whoever knows a live session's random part already holds the session, so
// the sticky path pays nothing, and a forged or tampered ID is rejected
// before any memcached operation. Inside the process and in memcached's
// keys, the ID is the unsigned one (entry.id); only the cookie is signed.

// macHexLen is the length of an ID's MAC: 128 bits in hex.
const macHexLen = 32

// idMACs signs session IDs for their cookies, or does not.
type idMACs interface {
	// sign returns the cookie value for the unsigned ID id.
	sign(id string) string
	// split returns the unsigned ID of cookie value v, and whether v has
	// the shape of a cookie value (a well-formed MAC, if IDs are signed).
	split(v string) (id string, ok bool)
	// verify reports whether the MAC of cookie value v, which split
	// accepted, is one of the keys'.
	verify(v string) bool
}

// unsignedIDs is idMACs without Config.Keys: the cookie is the ID.
type unsignedIDs struct{}

func (unsignedIDs) sign(id string) string         { return id }
func (unsignedIDs) split(v string) (string, bool) { return v, true }
func (unsignedIDs) verify(string) bool            { return true }

// hmacIDs signs IDs with keys derived from Config.Keys; the first signs.
type hmacIDs struct {
	keys [][]byte
}

// idMACInfo separates the ID signing keys from any other key derived from
// Config.Keys.
const idMACInfo = "mcsession session ID MAC v1"

// newHMACIDs derives the signing keys from secrets (Config.Keys, already
// checked to be at least 32 bytes each).
func newHMACIDs(secrets [][]byte) (*hmacIDs, error) {
	h := &hmacIDs{}
	for _, s := range secrets {
		k, err := hkdf.Key(sha256.New, s, nil, idMACInfo, sha256.Size)
		if err != nil {
			return nil, err
		}
		h.keys = append(h.keys, k)
	}
	return h, nil
}

func (h *hmacIDs) sign(id string) string {
	var sum [sha256.Size]byte
	mac := h.mac(h.keys[0], id, sum[:0])
	var b strings.Builder
	b.Grow(len(id) + 1 + macHexLen)
	b.WriteString(id)
	b.WriteByte('.')
	var hexMAC [macHexLen]byte
	hex.Encode(hexMAC[:], mac[:macHexLen/2])
	b.Write(hexMAC[:])
	return b.String()
}

// split checks the MAC's place and length only: its digits are checked
// by verify, before any lookup, so the sticky path does not scan them.
func (h *hmacIDs) split(v string) (string, bool) {
	i := len(v) - macHexLen - 1
	if i <= 0 || v[i] != '.' {
		return "", false
	}
	return v[:i], true
}

func (h *hmacIDs) verify(v string) bool {
	id, ok := h.split(v)
	if !ok {
		return false
	}
	var got [macHexLen / 2]byte
	for j := len(id) + 1; j < len(v); j++ {
		if c := v[j]; c-'0' > 9 && c-'a' > 5 { // lowercase hex only: one form per MAC
			return false
		}
	}
	if _, err := hex.Decode(got[:], []byte(v[len(id)+1:])); err != nil {
		return false
	}
	var sum [sha256.Size]byte
	for _, k := range h.keys {
		if hmac.Equal(h.mac(k, id, sum[:0])[:macHexLen/2], got[:]) {
			return true
		}
	}
	return false
}

// mac appends HMAC-SHA-256 of id under key to dst.
func (h *hmacIDs) mac(key []byte, id string, dst []byte) []byte {
	m := hmac.New(func() hash.Hash { return sha256.New() }, key)
	m.Write([]byte(id))
	return m.Sum(dst)
}
