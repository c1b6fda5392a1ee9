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
//	"MCS" format-version(1)
//	uvarint created     (Unix milliseconds)
//	uvarint idleTimeout (milliseconds)
//	uvarint lifetime    (milliseconds, 0 = none)
//	uvarint len(ID), ID
//	payload             (Transcoder.Encode of the values)
//
// The ID inside guards against a key that resolves to another session's
// data. The last access time is not stored: memcached's TTL, renewed by
// touch, is what enforces the idle timeout of a backup.
const (
	envelopeMagic   = "MCS"
	envelopeVersion = 1
)

// envelope is the metadata stored with a session's values.
type envelope struct {
	id          string
	created     time.Time
	idleTimeout time.Duration
	lifetime    time.Duration
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
	b = binary.AppendUvarint(b, uint64(len(e.id)))
	b = append(b, e.id...)
	return append(b, payload...)
}

// decodeEnvelope splits a stored blob into its envelope and payload. It
// returns an error wrapping errCorrupt for anything it cannot read, and never
// panics.
func decodeEnvelope(b []byte) (envelope, []byte, error) {
	var e envelope
	if len(b) < len(envelopeMagic)+1 || string(b[:len(envelopeMagic)]) != envelopeMagic {
		return e, nil, fmt.Errorf("%w: no %q header", errCorrupt, envelopeMagic)
	}
	if v := b[len(envelopeMagic)]; v != envelopeVersion {
		return e, nil, fmt.Errorf("%w: format version %d, want %d", errCorrupt, v, envelopeVersion)
	}
	b = b[len(envelopeMagic)+1:]
	var fields [4]uint64
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return e, nil, fmt.Errorf("%w: truncated header", errCorrupt)
		}
		fields[i], b = v, b[n:]
	}
	const maxMillis = 1 << 50 // about 35,000 years: far beyond any real value, far from overflow
	for _, v := range fields[:3] {
		if v > maxMillis {
			return e, nil, fmt.Errorf("%w: time out of range", errCorrupt)
		}
	}
	// A time.Duration holds about 292 years: a longer timeout would wrap.
	const maxDurationMillis = math.MaxInt64 / uint64(time.Millisecond)
	if fields[1] > maxDurationMillis || fields[2] > maxDurationMillis {
		return e, nil, fmt.Errorf("%w: timeout out of range", errCorrupt)
	}
	if fields[3] > maxIDLen || fields[3] > uint64(len(b)) {
		return e, nil, fmt.Errorf("%w: bad ID length", errCorrupt)
	}
	e.created = time.UnixMilli(int64(fields[0]))
	e.idleTimeout = time.Duration(fields[1]) * time.Millisecond
	e.lifetime = time.Duration(fields[2]) * time.Millisecond
	e.id = string(b[:fields[3]])
	return e, b[fields[3]:], nil
}
