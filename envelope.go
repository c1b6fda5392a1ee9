package mcsession

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// A stored session is an envelope followed by the transcoder's bytes:
//
//	"MCS" format-version(3)
//	uvarint created     (Unix milliseconds)
//	uvarint idleTimeout (milliseconds)
//	uvarint lifetime    (milliseconds, 0 = none)
//	uvarint generation  (grows with every store of the session, on any instance)
//	byte    flags       (flagEnded: a tombstone, the session was ended; no payload;
//	                     flagSealed: the payload is sealed, see seal.go)
//	payload             (Transcoder.Encode of the values)
//
// The generation decides between copies that disagree: a load takes the
// highest it finds, and an instance whose local session is older than a
// copy written elsewhere serves that copy (failback). A tombstone is the
// copy of an ended session, written where the delete of a copy cannot
// reach its node (down): it outranks the copy that node may bring back.
//
// The envelope holds no part of the session ID: memcached must hold nothing
// a reader could present as a cookie, and the key (a SHA-256 of the ID)
// already ties the copy to its ID. Version 1 stored the whole ID after
// lifetime, as a uvarint length and the bytes; such copies, left by an
// older instance during a rolling deploy, are still read (their ID is
// checked and dropped), and adopt marks the session for a store, so they
// are written again in the current version even if the session is only
// read. Version 2 is version 3 without generation and flags (generation 0).
// The last access time is not stored: memcached's TTL, renewed by touch, is
// what enforces the idle timeout of a copy.
const (
	envelopeMagic     = "MCS"
	envelopeVersion   = 3
	envelopeVersionV2 = 2 // no generation: read, never written
	envelopeVersionV1 = 1 // with the ID: read, never written

	flagEnded  = 1 << 0 // a tombstone: the session was ended
	flagSealed = 1 << 1 // the payload is sealed (Config.Keys, seal.go)
)

// envelope is the metadata stored with a session's values.
type envelope struct {
	version     byte // the format read by decodeEnvelope; appendEnvelope writes envelopeVersion
	created     time.Time
	idleTimeout time.Duration
	lifetime    time.Duration
	gen         uint64 // the store's generation (0 in versions 1 and 2)
	ended       bool   // a tombstone: the session was ended where a copy could not be deleted
	sealed      bool   // the payload is sealed (seal.go)
}

// errCorrupt is wrapped by every envelope decoding error.
var errCorrupt = errors.New("corrupt session blob")

// appendEnvelope appends the encoded envelope and payload to b.
func appendEnvelope(b []byte, e envelope, payload []byte) []byte {
	b = append(b, envelopeMagic...)
	b = append(b, envelopeVersion)
	b = binary.AppendUvarint(b, uint64(max(e.created.UnixMilli(), 0)))
	b = binary.AppendUvarint(b, uint64(e.idleTimeout.Milliseconds()))
	b = binary.AppendUvarint(b, uint64(e.lifetime.Milliseconds()))
	b = binary.AppendUvarint(b, e.gen)
	var flags byte
	if e.ended {
		flags |= flagEnded
	}
	if e.sealed {
		flags |= flagSealed
	}
	b = append(b, flags)
	return append(b, payload...)
}

// decodeEnvelope splits a stored blob, found under the key of id, into its
// envelope and payload. It returns an error wrapping errCorrupt for
// anything it cannot read (and for a version 1 blob whose ID is not id),
// and never panics.
func decodeEnvelope(b []byte, id string) (envelope, []byte, error) {
	var e envelope
	if len(b) < len(envelopeMagic)+1 || string(b[:len(envelopeMagic)]) != envelopeMagic {
		return e, nil, fmt.Errorf("%w: no %q header", errCorrupt, envelopeMagic)
	}
	version := b[len(envelopeMagic)]
	if version != envelopeVersion && version != envelopeVersionV2 && version != envelopeVersionV1 {
		return e, nil, fmt.Errorf("%w: format version %d, want %d", errCorrupt, version, envelopeVersion)
	}
	b = b[len(envelopeMagic)+1:]
	var fields [3]uint64
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return e, nil, fmt.Errorf("%w: truncated header", errCorrupt)
		}
		fields[i], b = v, b[n:]
	}
	const maxMillis = 1 << 50 // about 35,000 years: far beyond any real value, far from overflow
	for _, v := range fields {
		if v > maxMillis {
			return e, nil, fmt.Errorf("%w: time out of range", errCorrupt)
		}
	}
	// A time.Duration holds about 292 years: a longer timeout would wrap.
	const maxDurationMillis = math.MaxInt64 / uint64(time.Millisecond)
	if fields[1] > maxDurationMillis || fields[2] > maxDurationMillis {
		return e, nil, fmt.Errorf("%w: timeout out of range", errCorrupt)
	}
	switch version {
	case envelopeVersionV1:
		var err error
		if b, err = skipV1ID(b, id); err != nil {
			return e, nil, err
		}
	case envelopeVersion:
		gen, n := binary.Uvarint(b)
		if n <= 0 || len(b) == n {
			return e, nil, fmt.Errorf("%w: truncated header", errCorrupt)
		}
		flags := b[n]
		if flags&^(flagEnded|flagSealed) != 0 {
			return e, nil, fmt.Errorf("%w: unknown flags %#x", errCorrupt, flags)
		}
		e.gen, e.ended, e.sealed, b = gen, flags&flagEnded != 0, flags&flagSealed != 0, b[n+1:]
	}
	e.version = version
	e.created = time.UnixMilli(int64(fields[0]))
	e.idleTimeout = time.Duration(fields[1]) * time.Millisecond
	e.lifetime = time.Duration(fields[2]) * time.Millisecond
	return e, b, nil
}

// skipV1ID reads past the ID of a version 1 envelope, checking that it is
// id, and returns the payload.
func skipV1ID(b []byte, id string) ([]byte, error) {
	n, size := binary.Uvarint(b)
	if size <= 0 || n > maxIDLen || n > uint64(len(b)-size) {
		return nil, fmt.Errorf("%w: bad ID length", errCorrupt)
	}
	b = b[size:]
	if string(b[:n]) != id {
		return nil, fmt.Errorf("%w: stored ID does not match the key's ID", errCorrupt)
	}
	return b[n:], nil
}
