package mcsession

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Sealed copies. With Config.Keys, the payload of every stored copy (the
// transcoder's bytes) is sealed with AES-256-GCM under a key derived from
// the first of Config.Keys: a fresh random nonce per store, and the copy's
// memcached key and envelope header as associated data, so a blob moved to
// another key, or whose header (times, generation) was changed, does not
// open. The header stays in clear (its flagSealed says the rest is
// sealed): it holds nothing about the session but its times and
// generation. What sealing cannot stop: a writer to memcached replaying a
// whole older copy of the same session under its own key. The sealed part is
//
//	key id   4 bytes: the first bytes of SHA-256 of the derived key, so a
//	         copy names the key that sealed it whatever the order of Keys
//	nonce    12 bytes
//	sealed   the payload, encrypted, and its 16-byte tag
//
// Every key opens, so a copy sealed with an older key is read (and
// written again with the first key at the session's next store); one
// sealed with an unknown key, or that fails to open, is a miss, counted in
// Stats.OpenFailures. With Keys, a copy that is not sealed is refused too:
// whoever can write to memcached could otherwise plant a session. The
// unchanged-payload check hashes the plaintext, so a read-only request
// still costs no memcached operation.

// sealer seals the payloads of stored copies, or does not.
type sealer interface {
	// sealed reports whether copies are sealed (the envelope's flag).
	sealed() bool
	// seal appends to dst payload sealed for the memcached key and the
	// envelope header in front of it (both authenticated, not encrypted).
	seal(dst []byte, key string, header, payload []byte) []byte
	// open returns the payload sealed in b for the memcached key and the
	// header read in front of it.
	open(key string, header, b []byte) ([]byte, error)
}

// clearCopies is the sealer without Config.Keys: payloads are stored as
// they are.
type clearCopies struct{}

func (clearCopies) sealed() bool                                  { return false }
func (clearCopies) seal(dst []byte, _ string, _, p []byte) []byte { return append(dst, p...) }
func (clearCopies) open(_ string, _, b []byte) ([]byte, error)    { return b, nil }

// aeadCopies seals payloads with AES-256-GCM; the first key seals.
type aeadCopies struct {
	keys []aeadKey
}

// aeadKey is one derived key and its id.
type aeadKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

const (
	keyIDLen = 4
	// copyAEADInfo separates the sealing keys from any other key derived
	// from Config.Keys.
	copyAEADInfo = "mcsession copy AES-256-GCM v1"
)

// errOpen is wrapped by every error of opening a sealed copy.
var errOpen = errors.New("mcsession: stored copy does not open")

// newAEADCopies derives the sealing keys from secrets (Config.Keys, already
// checked to be at least 32 bytes each).
func newAEADCopies(secrets [][]byte) (*aeadCopies, error) {
	a := &aeadCopies{}
	for _, s := range secrets {
		k, err := hkdf.Key(sha256.New, s, nil, copyAEADInfo, 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		var key aeadKey
		copy(key.id[:], sum[:])
		key.aead = aead
		a.keys = append(a.keys, key)
	}
	return a, nil
}

func (a *aeadCopies) sealed() bool { return true }

func (a *aeadCopies) seal(dst []byte, key string, header, payload []byte) []byte {
	k := &a.keys[0]
	dst = append(dst, k.id[:]...)
	return k.aead.Seal(dst, nil, payload, associated(key, header))
}

// associated is the associated data of a copy: its memcached key and its
// envelope header (times, generation, flags), so that neither can be
// changed, nor the copy moved, without the copy failing to open.
func associated(key string, header []byte) []byte {
	ad := make([]byte, 0, len(key)+1+len(header))
	ad = append(ad, key...)
	ad = append(ad, 0) // keys hold no NUL: the split is unambiguous
	return append(ad, header...)
}

func (a *aeadCopies) open(key string, header, b []byte) ([]byte, error) {
	if len(b) < keyIDLen {
		return nil, fmt.Errorf("%w: truncated", errOpen)
	}
	for i := range a.keys {
		k := &a.keys[i]
		if string(k.id[:]) != string(b[:keyIDLen]) {
			continue
		}
		p, err := k.aead.Open(nil, nil, b[keyIDLen:], associated(key, header))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errOpen, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%w: sealed with a key not in Config.Keys", errOpen)
}
