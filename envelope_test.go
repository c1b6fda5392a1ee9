package mcsession

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	created := time.UnixMilli(1_700_000_000_123)
	tests := []struct {
		name    string
		e       envelope
		payload []byte
	}{
		{"typical", envelope{created: created, idleTimeout: 30 * time.Minute, lifetime: 0, gen: 1}, []byte("payload")},
		{"late generation", envelope{created: created, idleTimeout: 30 * time.Minute, gen: math.MaxUint64}, []byte("payload")},
		{"tombstone", envelope{created: created, idleTimeout: 30 * time.Minute, gen: 9, ended: true}, nil},
		{"lifetime", envelope{created: created, idleTimeout: time.Second, lifetime: 12 * time.Hour}, []byte{0, 1, 2, 0xff}},
		{"empty payload", envelope{created: created, idleTimeout: time.Hour, lifetime: 0}, nil},
		{"zero fields", envelope{created: time.UnixMilli(0)}, nil},
		{"longest timeouts", envelope{created: created, idleTimeout: math.MaxInt64, lifetime: math.MaxInt64}, nil},
		{"payload that looks like an envelope", envelope{created: created, idleTimeout: time.Hour, lifetime: 0}, appendEnvelope(nil, envelope{}, []byte("inner"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob := appendEnvelope([]byte("prefix"), tt.e, tt.payload)
			require.True(t, bytes.HasPrefix(blob, []byte("prefix")), "appendEnvelope dropped the bytes it appends to: %q", blob)
			got, payload, err := decodeEnvelope(blob[len("prefix"):], testRandom)
			require.NoError(t, err, "decodeEnvelope(appendEnvelope(%+v))", tt.e)
			assert.True(t, sameEnvelope(got, tt.e), "decodeEnvelope(appendEnvelope(%+v)) = %+v, want the same envelope", tt.e, got)
			assert.Equal(t, string(tt.payload), string(payload), "decodeEnvelope(appendEnvelope(%+v, %q)) payload", tt.e, tt.payload)
		})
	}
}

// appendEnvelopeV1 appends a version 1 envelope, which carried the ID, as
// instances before envelope version 2 wrote it.
func appendEnvelopeV1(b []byte, e envelope, id string, payload []byte) []byte {
	b = append(b, envelopeMagic...)
	b = append(b, envelopeVersionV1)
	b = binary.AppendUvarint(b, uint64(max(e.created.UnixMilli(), 0)))
	b = binary.AppendUvarint(b, uint64(e.idleTimeout.Milliseconds()))
	b = binary.AppendUvarint(b, uint64(e.lifetime.Milliseconds()))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	return append(b, payload...)
}

// TestEnvelopeHoldsNoID pins that the stored envelope carries no part of
// the session ID (version 1 carried all of it), while a version 1 copy left
// by an older instance during a rolling deploy is still read.
func TestEnvelopeHoldsNoID(t *testing.T) {
	id := testRandom + ".n1.app1"
	e := envelope{created: time.UnixMilli(1_700_000_000_000), idleTimeout: time.Hour, lifetime: 0}
	blob := appendEnvelope(nil, e, []byte("payload"))
	assert.NotContains(t, string(blob), testRandom, "appendEnvelope(%+v) = %q: must not hold the random part", e, blob)
	assert.Equal(t, byte(envelopeVersion), blob[len(envelopeMagic)], "appendEnvelope writes format version %d", envelopeVersion)

	v1 := appendEnvelopeV1(nil, e, id, []byte("payload"))
	got, payload, err := decodeEnvelope(v1, id)
	require.NoError(t, err, "decodeEnvelope(version 1 blob of %s)", id)
	assert.True(t, sameEnvelope(got, e), "decodeEnvelope(version 1) = %+v, want %+v", got, e)
	assert.Equal(t, "payload", string(payload), "decodeEnvelope(version 1) payload")

	_, _, err = decodeEnvelope(v1, "fedcba9876543210fedcba9876543210.n1.app1")
	assert.ErrorIs(t, err, errCorrupt, "decodeEnvelope(version 1 blob of %s) under another ID's key: want errCorrupt", id)
}

// sameEnvelope reports whether a and b are equal at the envelope's
// millisecond precision.
func sameEnvelope(a, b envelope) bool {
	return a.created.UnixMilli() == b.created.UnixMilli() &&
		a.idleTimeout.Milliseconds() == b.idleTimeout.Milliseconds() &&
		a.lifetime.Milliseconds() == b.lifetime.Milliseconds() &&
		a.gen == b.gen && a.ended == b.ended
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	good := appendEnvelope(nil, envelope{created: time.UnixMilli(1e12), idleTimeout: time.Hour, lifetime: 0}, []byte("p"))
	goodV1 := appendEnvelopeV1(nil, envelope{created: time.UnixMilli(1e12), idleTimeout: time.Hour, lifetime: 0}, testRandom, []byte("p"))
	header := func(version byte, fields ...uint64) []byte {
		b := []byte{'M', 'C', 'S', version}
		for _, f := range fields {
			b = binary.AppendUvarint(b, f)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"magic only", []byte("MCS")},
		{"wrong magic", append([]byte("XYZ"), good[3:]...)},
		{"gob bytes", []byte{0x0c, 0xff, 0x81, 0x02, 0x01}},
		{"version 0", append([]byte("MCS\x00"), good[4:]...)},
		{"version 4", append([]byte("MCS\x04"), good[4:]...)},
		{"no fields", []byte("MCS\x02")},
		{"truncated uvarint", []byte("MCS\x02\x80")},
		{"two fields", header(2, 1, 2)},
		{"overlong uvarint", append([]byte("MCS\x02"), bytes.Repeat([]byte{0xff}, 11)...)},
		{"created out of range", header(2, 1<<50+1, 0, 0)},
		{"idle out of range", header(2, 0, 1<<63, 0)},
		{"lifetime out of range", header(2, 0, 0, 1<<60)},
		// Found by FuzzDecodeEnvelope: in range for a time, these wrapped
		// around to a negative time.Duration.
		{"idle overflows Duration", header(2, 0, math.MaxInt64/uint64(time.Millisecond)+1, 0)},
		{"lifetime overflows Duration", header(2, 0, 0, 1<<50)},
		{"v3 without generation", header(3, 0, 0, 0)},
		{"v3 without flags", header(3, 0, 0, 0, 7)},
		{"v3 unknown flag", append(header(3, 0, 0, 0, 7), 0x04)},
		{"v1 without ID", header(1, 0, 0, 0)},
		{"v1 ID longer than blob", header(1, 0, 0, 0, 5)},
		{"v1 ID longer than maxIDLen", append(header(1, 0, 0, 0, maxIDLen+1), bytes.Repeat([]byte("a"), maxIDLen+1)...)},
		{"v1 ID length overflows int", header(1, 0, 0, 0, 1<<63)},
		{"v1 truncated ID", goodV1[:len(goodV1)-3]},
		{"v1 ID of another session", appendEnvelopeV1(nil, envelope{}, "fedcba9876543210fedcba9876543210", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, payload, err := decodeEnvelope(tt.in, testRandom)
			assert.ErrorIs(t, err, errCorrupt, "decodeEnvelope(%q) = %+v, %q, %v, want error wrapping errCorrupt", tt.in, e, payload, err)
		})
	}
}

// FuzzDecodeEnvelope checks that decodeEnvelope never panics on stored
// bytes, that what it accepts re-encodes to an equal envelope, and that
// appendEnvelope then decodeEnvelope round-trips every envelope in range.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(appendEnvelope(nil, envelope{created: time.UnixMilli(1_700_000_000_000), idleTimeout: 30 * time.Minute, lifetime: 0}, []byte("payload")),
		testRandom+".n1", int64(1_700_000_000_000), int64(1800_000), int64(0), []byte("payload"))
	f.Add(appendEnvelopeV1(nil, envelope{created: time.UnixMilli(1_700_000_000_000), idleTimeout: 30 * time.Minute, lifetime: 0}, testRandom+".n1", []byte("payload")),
		testRandom+".n1", int64(1_700_000_000_000), int64(1800_000), int64(0), []byte("payload"))
	f.Add([]byte("MCS\x01\x80"), "", int64(0), int64(0), int64(0), []byte{})
	f.Fuzz(func(t *testing.T, blob []byte, id string, createdMs, idleMs, lifeMs int64, payload []byte) {
		// Arbitrary stored bytes.
		e, rest, err := decodeEnvelope(blob, id)
		if err == nil {
			again, rest2, err := decodeEnvelope(appendEnvelope(nil, e, rest), id)
			require.NoError(t, err, "decodeEnvelope(%q) = %+v, %q; re-encoded it fails to decode: %v, want the same envelope", blob, e, rest, err)
			// bytes.Equal, not require.Equal: a nil and an empty payload are the same.
			require.True(t, sameEnvelope(again, e) && bytes.Equal(rest2, rest),
				"decodeEnvelope(%q) = %+v, %q; re-encoded it decodes to %+v, %q, want the same", blob, e, rest, again, rest2)
			require.False(t, e.idleTimeout < 0 || e.lifetime < 0 || e.created.UnixMilli() < 0,
				"decodeEnvelope(%q) = %+v, out of range, want no negative time or duration", blob, e)
		} else {
			require.ErrorIs(t, err, errCorrupt, "decodeEnvelope(%q) error = %v, want errCorrupt", blob, err)
		}

		// Round trip of an envelope in the range the Manager writes.
		const maxMillis, maxDurationMillis = 1 << 50, math.MaxInt64 / int64(time.Millisecond)
		if createdMs < 0 || createdMs > maxMillis || idleMs < 0 || idleMs > maxDurationMillis || lifeMs < 0 || lifeMs > maxDurationMillis {
			return
		}
		in := envelope{created: time.UnixMilli(createdMs), idleTimeout: time.Duration(idleMs) * time.Millisecond, lifetime: time.Duration(lifeMs) * time.Millisecond}
		out, p, err := decodeEnvelope(appendEnvelope(nil, in, payload), id)
		require.NoError(t, err, "decodeEnvelope(appendEnvelope(%+v, %q)) error = %v, want nil", in, payload, err)
		require.True(t, sameEnvelope(out, in) && bytes.Equal(p, payload),
			"decodeEnvelope(appendEnvelope(%+v, %q)) = %+v, %q, want the same envelope and payload", in, payload, out, p)
	})
}

// TestCorruptBlobIsCountedMiss plants blobs under the key of a session
// whose instance died and checks that a request with its cookie gets a new
// session, the bad blob counted as a decode error and a miss, while a good
// blob planted the same way is taken over.
func TestCorruptBlobIsCountedMiss(t *testing.T) {
	srv := memcachetest.Start(t)
	deadID := testRandom + ".n1.dead"
	otherID := "fedcba9876543210fedcba9876543210.n1.dead"
	payload, err := GobTranscoder{}.Encode(map[string]any{"a": "planted"})
	require.NoError(t, err, "GobTranscoder{}.Encode({a: planted}) error = %v, want the payload to plant", err)
	env := envelope{created: time.Now(), idleTimeout: time.Hour, lifetime: 0}
	tests := []struct {
		name    string
		blob    []byte
		corrupt bool
	}{
		{"good blob", appendEnvelope(nil, env, payload), false},
		{"good version 1 blob", appendEnvelopeV1(nil, env, deadID, payload), false},
		{"garbage", []byte("\x00\xffthis is not a session\r\nEND\r\n"), true},
		{"gob payload without envelope", payload, true},
		{"future format version", append([]byte("MCS\x07"), appendEnvelope(nil, env, payload)[4:]...), true},
		{"truncated envelope", appendEnvelope(nil, env, payload)[:6], true},
		{"version 1 envelope of another ID", appendEnvelopeV1(nil, env, otherID, payload), true},
		{"version 1 envelope without ID", appendEnvelopeV1(nil, env, "", payload), true},
		{"garbage payload", appendEnvelope(nil, env, []byte("\x05\x06garbage")), true},
		{"empty payload", appendEnvelope(nil, env, nil), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, srv.Flush(), "Flush() of %s, want an empty memcached for each case", srv.Addr())
			m := newTestManager(t, Config{Nodes: nodesOf(srv), Route: "live"})
			key := memcacheKey(DefaultKeyPrefix, deadID)
			require.NoError(t, srv.Set(key, tt.blob, 0), "Set(%q) of the planted blob, want stored", key)
			rec, saw := serveProbe(t, m, DefaultCookieName+"="+deadID, "a", true)
			st := m.Stats()
			if !tt.corrupt {
				assert.False(t, saw.isNew, "good blob: handler saw %+v, want the planted session, not a new one", saw)
				assert.Equal(t, "planted", saw.value, "good blob: handler saw a = %q, want the planted value", saw.value)
				assert.Equal(t, uint64(1), st.LoadsHit, "good blob: Stats().LoadsHit = %d, want 1 (stats %+v)", st.LoadsHit, st)
				assert.Zero(t, st.DecodeErrors, "good blob: Stats().DecodeErrors = %d, want 0 (stats %+v)", st.DecodeErrors, st)
				return
			}
			assert.True(t, saw.isNew, "handler saw %+v, want a new empty session", saw)
			assert.Empty(t, saw.value, "handler saw %+v, want a new empty session", saw)
			assert.Empty(t, saw.keys, "handler saw %+v, want a new empty session", saw)
			assert.Equal(t, uint64(1), st.DecodeErrors, "Stats().DecodeErrors = %d, want 1: the bad blob is counted", st.DecodeErrors)
			assert.Equal(t, uint64(1), st.LoadsMiss, "Stats().LoadsMiss = %d, want 1: a bad blob is a miss", st.LoadsMiss)
			assert.Zero(t, st.LoadsHit, "Stats().LoadsHit = %d, want 0", st.LoadsHit)
			// The handler set a value: the new session has a new ID.
			id := setCookieValue(t, rec.Result().Header)
			p, ok := parseID(id, true)
			if assert.True(t, ok, "new session cookie = %q, want a valid ID", id) {
				assert.NotEqual(t, testRandom, p.random, "new session cookie = %q, want a new random part, not the dead session's", id)
				assert.Equal(t, "live", p.route, "new session cookie = %q, want it routed to live", id)
			}
		})
	}
}
