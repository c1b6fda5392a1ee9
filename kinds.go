package mcsession

import "time"

// kind classifies a session value for the code that handles values
// without reflection. A value is plain if its kind is not kindOther. There
// is one table, kindOf, and every user asks it:
//
//   - mutable: a scalar kind cannot be changed in place; the other plain
//     kinds ([]byte, []string, map[string]string) can.
//   - the compact form (appendCompact, decodeCompact) writes every plain
//     kind, and reads it back with the same Go type.
//   - fingerprint hashes every plain kind.
//   - snapshot and sameValues keep and compare scalars and []string.
//
// Anything else is kindOther: mutable asks reflection, GobTranscoder falls
// back to gob, and the in-place check hashes the encoding.
//
// A kind's number is its tag in the compact form, so stored sessions
// depend on it: new kinds are appended, and no kind is ever renumbered or
// removed.
type kind uint8

const (
	kindOther      kind = iota // not plain; never a tag
	kindString                 // string
	kindBytes                  // []byte
	kindBool                   // bool
	kindInt                    // int
	kindInt64                  // int64
	kindInt32                  // int32
	kindUint                   // uint
	kindUint64                 // uint64
	kindFloat64                // float64
	kindStrings                // []string
	kindStringMap              // map[string]string
	kindTime                   // time.Time
	kindInt8                   // int8
	kindInt16                  // int16
	kindUint8                  // uint8 (byte)
	kindUint16                 // uint16
	kindUint32                 // uint32
	kindUintptr                // uintptr
	kindFloat32                // float32
	kindComplex64              // complex64
	kindComplex128             // complex128

	numKinds // one more than the last kind
)

// kindOf returns the kind of v. Only these exact types are plain: a type
// defined from one of them (type userID string) is kindOther.
func kindOf(v any) kind {
	switch v.(type) {
	case string:
		return kindString
	case []byte:
		return kindBytes
	case bool:
		return kindBool
	case int:
		return kindInt
	case int8:
		return kindInt8
	case int16:
		return kindInt16
	case int32:
		return kindInt32
	case int64:
		return kindInt64
	case uint:
		return kindUint
	case uint8:
		return kindUint8
	case uint16:
		return kindUint16
	case uint32:
		return kindUint32
	case uint64:
		return kindUint64
	case uintptr:
		return kindUintptr
	case float32:
		return kindFloat32
	case float64:
		return kindFloat64
	case complex64:
		return kindComplex64
	case complex128:
		return kindComplex128
	case []string:
		return kindStrings
	case map[string]string:
		return kindStringMap
	case time.Time:
		return kindTime
	}
	return kindOther
}

// scalar reports whether values of kind k are immutable and compare with
// ==: no handler can change one in place, and a snapshot holds it as it
// is. (A time.Time's *Location is never changed through it.)
func (k kind) scalar() bool { return scalarKinds>>k&1 != 0 }

// scalarKinds has bit k set for each scalar kind k: a shift, not a switch,
// on every read of a session value.
const scalarKinds uint64 = (1<<numKinds - 1) &^ (1<<kindOther | 1<<kindBytes | 1<<kindStrings | 1<<kindStringMap)
