package mcsession

import (
	"fmt"
	"hash/maphash"
)

// encode runs the Transcoder, turning a panic (a value's MarshalJSON or
// GobEncode on a nil receiver, say) into an error: it runs with the
// session locked, on a request's goroutine or a worker's, and must return.
func (m *Manager) encode(values values) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("transcoder panicked: %v", r)
		}
	}()
	switch m.cfg.Transcoder.(type) {
	case GobTranscoder, *GobTranscoder:
		return encodeGob(values) // the same bytes, without a map
	}
	return m.cfg.Transcoder.Encode(values.asMap())
}

// valuesHash identifies the state of a session's values: their fingerprint
// when they are plain values, else a hash of their encoding.
func (m *Manager) valuesHash(values values) (uint64, error) {
	if h, ok := fingerprint(m.seed, values); ok {
		return h, nil
	}
	payload, err := m.encode(values)
	if err != nil {
		return 0, err
	}
	return maphash.Bytes(m.seed, payload), nil
}

// storedHash is valuesHash for values just decoded from payload: the
// payload's own hash stands for values that have no fingerprint.
func (m *Manager) storedHash(values values, payload []byte) uint64 {
	if h, ok := fingerprint(m.seed, values); ok {
		return h
	}
	return maphash.Bytes(m.seed, payload)
}
