package mcsession

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

var timeType = reflect.TypeFor[time.Time]()

// A Transcoder encodes a session's values for memcached and decodes them
// back. Implementations must be safe for concurrent use.
//
// Encode should be deterministic: equal values should give equal bytes. The
// Manager compares the bytes of a session whose mutable values were read
// with the bytes it last stored, and writes only when they differ; a
// non-deterministic encoding costs extra writes, never lost ones.
type Transcoder interface {
	// Encode encodes values. An error means the session cannot be backed
	// up (for example an unregistered gob type); it is logged and counted
	// in Stats.BackupsFailed, and the session keeps working locally.
	Encode(values map[string]any) ([]byte, error)
	// Decode decodes bytes written by Encode. An error makes the stored
	// session a miss, counted in Stats.DecodeErrors.
	Decode(data []byte) (map[string]any, error)
}

// GobTranscoder encodes values with encoding/gob, in key order. Every
// concrete type stored in a session as an interface value must be registered
// with gob.Register before it is encoded or decoded, as encoding/gob
// requires; basic types (string, int, bool, []byte, ...) need no
// registration. Gob writes maps in random order, so a map value that was read
// makes the session look changed and costs a write; use structs or slices for
// values read on hot paths. The zero value is ready to use.
//
// Sessions whose values all have one of these types are written in a
// compact form instead, about ten times faster to encode and decode than
// gob: string, []byte, bool, int, int8, int16, int32, int64, uint, uint8,
// uint16, uint32, uint64, uintptr, float32, float64, complex64, complex128,
// []string, map[string]string and time.Time (exactly these types, not types
// defined from them). Decode reads both forms, and the values come back
// with the same types either way.
type GobTranscoder struct{}

// gobAttr is one session value as gob encodes it. Sessions are encoded as a
// key-sorted slice of attributes rather than a map so that equal sessions
// encode to equal bytes.
type gobAttr struct {
	Key   string
	Value any
}

// Encode implements Transcoder.
func (GobTranscoder) Encode(values map[string]any) ([]byte, error) {
	return encodeGob(valuesOf(values))
}

// encodeGob is GobTranscoder.Encode for values already sorted.
func encodeGob(values values) ([]byte, error) {
	if b, ok := appendCompact(nil, values); ok {
		return b, nil
	}
	attrs := make([]gobAttr, 0, len(values))
	for _, f := range values {
		attrs = append(attrs, gobAttr{f.key, f.value})
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(attrs); err != nil {
		return nil, fmt.Errorf("gob: %w (register the type with gob.Register)", err)
	}
	return buf.Bytes(), nil
}

// Decode implements Transcoder.
func (GobTranscoder) Decode(data []byte) (values map[string]any, err error) {
	// encoding/gob is hardened against hostile input, but a decode error
	// from memcached must never take the process down: recover anyway.
	defer func() {
		if r := recover(); r != nil {
			values, err = nil, fmt.Errorf("gob: panic while decoding: %v", r)
		}
	}()
	if len(data) > 0 && data[0] == compactMarker {
		return decodeCompact(data)
	}
	var attrs []gobAttr
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&attrs); err != nil {
		return nil, fmt.Errorf("gob: %w", err)
	}
	values = make(map[string]any, len(attrs))
	for _, a := range attrs {
		values[a.Key] = a.Value
	}
	return values, nil
}

// JSONTranscoder encodes values as one JSON object with encoding/json. It
// needs no type registration and its output is deterministic (object keys are
// sorted). A value loaded from memcached keeps its JSON form until the first
// Get[T], which decodes it into T; Session.Get returns it decoded as
// encoding/json decodes into an interface (map[string]any, []any, float64,
// string, bool). The zero value is ready to use.
type JSONTranscoder struct{}

// Encode implements Transcoder.
func (JSONTranscoder) Encode(values map[string]any) ([]byte, error) {
	b, err := json.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return b, nil
}

// Decode implements Transcoder.
func (JSONTranscoder) Decode(data []byte) (map[string]any, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	values := make(map[string]any, len(raw))
	for k, v := range raw {
		values[k] = jsonValue(v)
	}
	return values, nil
}

// jsonValue is a value loaded by JSONTranscoder and not yet asked for with a
// type. It marshals back to the same bytes.
type jsonValue json.RawMessage

// MarshalJSON returns the raw bytes.
func (v jsonValue) MarshalJSON() ([]byte, error) { return v, nil }

// decodeAs decodes v into a new T.
func decodeAs[T any](v jsonValue) (T, bool) {
	var t T
	if err := json.Unmarshal(v, &t); err != nil {
		return t, false
	}
	return t, true
}

// encodesAs reports whether t marshals to exactly raw, so swapping raw for t
// loses nothing.
func encodesAs(t any, raw jsonValue) bool {
	b, err := json.Marshal(t)
	return err == nil && string(b) == string(raw)
}

// decodeAny decodes v as encoding/json decodes into an interface.
func (v jsonValue) decodeAny() any {
	var a any
	if err := json.Unmarshal(v, &a); err != nil {
		return nil
	}
	return a
}

// mutable reports whether a handler holding v could change the session's
// state without calling Set: v is, or may contain, a pointer, map, slice,
// channel or interface. Values of a plain kind are answered by the kind
// table, without reflection.
func mutable(v any) bool {
	if k := kindOf(v); k != kindOther {
		return !k.scalar()
	}
	if v == nil {
		return false
	}
	return mutableType(reflect.TypeOf(v), 0)
}

func mutableType(t reflect.Type, depth int) bool {
	if depth > 8 {
		return true
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Array:
		return mutableType(t.Elem(), depth+1)
	case reflect.Struct:
		if t == timeType {
			return false // time.Time's *Location is never changed through it
		}
		for i := range t.NumField() {
			if mutableType(t.Field(i).Type, depth+1) {
				return true
			}
		}
	}
	return false
}
