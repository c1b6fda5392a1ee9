package memcacheserver

import (
	"container/list"
	"strconv"
	"sync"
	"time"
)

// itemOverhead approximates the bytes memcached spends on an item's header;
// it is charged against MaxBytes on top of the key and the value.
const itemOverhead = 48

// maxRelativeExptime is the largest exptime memcached reads as seconds from
// now (30 days); larger values are absolute Unix times.
const maxRelativeExptime = 60 * 60 * 24 * 30

// item is one stored value. Its value slice is never modified after the item
// is stored, so readers may use it after the store's lock is released.
type item struct {
	key   string
	flags uint32
	value []byte
	exp   time.Time // zero: never expires
	cas   uint64
	elem  *list.Element
}

// expired reports whether it has expired at now.
func (it *item) expired(now time.Time) bool {
	return !it.exp.IsZero() && !now.Before(it.exp)
}

// size is what the item costs against the byte limit.
func (it *item) size() int64 {
	return int64(len(it.key) + len(it.value) + itemOverhead)
}

// expiryTime converts a protocol exptime into an expiry instant: 0 never
// expires, up to 30 days is relative to now, anything larger is a Unix time,
// and a negative value has already expired.
func expiryTime(now time.Time, exptime int64) time.Time {
	switch {
	case exptime == 0:
		return time.Time{}
	case exptime < 0:
		return now
	case exptime <= maxRelativeExptime:
		return now.Add(time.Duration(exptime) * time.Second)
	default:
		return time.Unix(exptime, 0)
	}
}

// storeMode selects the storage command.
type storeMode int

const (
	modeSet storeMode = iota
	modeAdd
	modeReplace
	modeAppend
	modePrepend
	modeCAS
)

// storeResult is the outcome of a storage command; String is its reply line.
type storeResult int

const (
	resultStored storeResult = iota
	resultNotStored
	resultExists
	resultNotFound
	resultNoMemory
)

// String returns the protocol reply for r.
func (r storeResult) String() string {
	return [...]string{"STORED", "NOT_STORED", "EXISTS", "NOT_FOUND",
		"SERVER_ERROR out of memory storing object"}[r]
}

// incrResult is the outcome of incr or decr.
type incrResult int

const (
	incrOK incrResult = iota
	incrNotFound
	incrNonNumeric
	incrNoMemory
)

// store is a byte-bounded map of items with least-recently-used eviction and
// lazy expiry. It is safe for concurrent use.
type store struct {
	maxBytes    int64
	maxItemSize int
	now         func() time.Time

	// mu guards items, lru, bytes, lastCAS, flushAt, evictions and totalItems.
	mu         sync.Mutex
	items      map[string]*item
	lru        *list.List // of *item, most recently used at the front
	bytes      int64
	lastCAS    uint64
	flushAt    time.Time // pending delayed flush_all; zero if none
	evictions  uint64
	totalItems uint64
}

func newStore(maxBytes int64, maxItemSize int, now func() time.Time) *store {
	return &store{maxBytes: maxBytes, maxItemSize: maxItemSize, now: now,
		items: make(map[string]*item), lru: list.New()}
}

// lookupLocked returns the live item for key, or nil. It first applies a due
// delayed flush and drops the item if it has expired.
func (st *store) lookupLocked(key string, now time.Time) *item {
	st.applyFlushLocked(now)
	it := st.items[key]
	if it != nil && it.expired(now) {
		st.removeLocked(it)
		return nil
	}
	return it
}

// applyFlushLocked drops every item if a delayed flush_all is due.
func (st *store) applyFlushLocked(now time.Time) {
	if !st.flushAt.IsZero() && !now.Before(st.flushAt) {
		st.clearLocked()
	}
}

func (st *store) removeLocked(it *item) {
	delete(st.items, it.key)
	st.lru.Remove(it.elem)
	st.bytes -= it.size()
}

func (st *store) clearLocked() {
	clear(st.items)
	st.lru.Init()
	st.bytes = 0
	st.flushAt = time.Time{}
}

// insertLocked stores it in place of any item with the same key, evicting
// least recently used items until it fits. It reports false if it can never
// fit.
func (st *store) insertLocked(it *item, now time.Time) bool {
	if it.size() > st.maxBytes {
		return false
	}
	if old := st.items[it.key]; old != nil {
		st.removeLocked(old)
	}
	for st.bytes+it.size() > st.maxBytes {
		victim := st.lru.Back().Value.(*item)
		if !victim.expired(now) {
			st.evictions++
		}
		st.removeLocked(victim)
	}
	st.lastCAS++
	it.cas = st.lastCAS
	it.elem = st.lru.PushFront(it)
	st.items[it.key] = it
	st.bytes += it.size()
	st.totalItems++
	return true
}

// get returns a copy of the live item for key, moving it to the front of the
// LRU. If touch is set it also sets the item's expiry from exptime.
func (st *store) get(key string, touch bool, exptime int64) (item, bool) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	it := st.lookupLocked(key, now)
	if it == nil {
		return item{}, false
	}
	if touch {
		it.exp = expiryTime(now, exptime)
	}
	st.lru.MoveToFront(it.elem)
	return *it, true
}

// set runs a storage command. casID is only used by modeCAS.
func (st *store) set(mode storeMode, key string, flags uint32, exptime int64, value []byte, casID uint64) storeResult {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.lookupLocked(key, now)
	switch {
	case mode == modeAdd && old != nil:
		st.lru.MoveToFront(old.elem) // a failed add counts as a use, as in memcached
		return resultNotStored
	case mode == modeCAS && old == nil:
		return resultNotFound
	case mode == modeCAS && old.cas != casID:
		return resultExists
	case (mode == modeReplace || mode == modeAppend || mode == modePrepend) && old == nil:
		return resultNotStored
	}
	it := &item{key: key, flags: flags, value: value, exp: expiryTime(now, exptime)}
	if mode == modeAppend || mode == modePrepend {
		if len(old.value)+len(value) > st.maxItemSize {
			return resultNotStored
		}
		first, second := old.value, value
		if mode == modePrepend {
			first, second = value, old.value
		}
		it.value = append(append(make([]byte, 0, len(first)+len(second)), first...), second...)
		it.flags, it.exp = old.flags, old.exp
	}
	if !st.insertLocked(it, now) {
		return resultNoMemory
	}
	return resultStored
}

// touch sets the expiry of a live item and reports whether there was one.
func (st *store) touch(key string, exptime int64) bool {
	_, ok := st.get(key, true, exptime)
	return ok
}

// delete removes key and reports whether a live item was there.
func (st *store) delete(key string) bool {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	it := st.lookupLocked(key, now)
	if it != nil {
		st.removeLocked(it)
	}
	return it != nil
}

// incr adds delta to (or, if !up, subtracts it from) the decimal number
// stored under key. Incrementing wraps at 2^64; decrementing stops at 0.
func (st *store) incr(key string, delta uint64, up bool) (uint64, incrResult) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.lookupLocked(key, now)
	if old == nil {
		return 0, incrNotFound
	}
	n, ok := parseCounter(old.value)
	if !ok {
		return 0, incrNonNumeric
	}
	switch {
	case up:
		n += delta
	case delta > n:
		n = 0
	default:
		n -= delta
	}
	it := &item{key: key, flags: old.flags, exp: old.exp, value: strconv.AppendUint(nil, n, 10)}
	if !st.insertLocked(it, now) {
		return 0, incrNoMemory
	}
	return n, incrOK
}

// parseCounter reads a value as incr sees it: decimal digits that fit in 64
// bits, optionally followed by whitespace and anything after it.
func parseCounter(v []byte) (uint64, bool) {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	if end == 0 || (end < len(v) && v[end] != ' ' && v[end] != '\r' && v[end] != '\n' && v[end] != '\t') {
		return 0, false
	}
	n, err := strconv.ParseUint(string(v[:end]), 10, 64)
	return n, err == nil
}

// flush invalidates every item: now if exptime is 0 or its instant has
// passed, otherwise at that instant (items stored until then are dropped
// too, as in memcached).
func (st *store) flush(exptime int64) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	at := expiryTime(now, exptime)
	if at.IsZero() || !now.Before(at) {
		st.clearLocked()
		return
	}
	st.applyFlushLocked(now) // an earlier flush that is due must not be postponed
	st.flushAt = at
}

// storeStats is a snapshot of the store's gauges and counters.
type storeStats struct {
	items, totalItems, evictions uint64
	bytes                        int64
}

func (st *store) stats() storeStats {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.applyFlushLocked(now)
	return storeStats{items: uint64(len(st.items)), totalItems: st.totalItems,
		evictions: st.evictions, bytes: st.bytes}
}
