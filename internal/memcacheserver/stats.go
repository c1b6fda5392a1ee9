package memcacheserver

import (
	"bufio"
	"os"
	"strconv"
	"sync/atomic"
)

// Stats holds the server's counters, named after memcached's "stats" lines.
// Counters count since Start; Close does not reset them.
type Stats struct {
	// CmdGet counts keys asked for by get and gets: a get of three keys
	// adds three. gat and gats count as CmdTouch instead.
	CmdGet uint64
	// CmdSet counts storage commands whose data block was read, whether or
	// not they stored anything.
	CmdSet uint64
	// CmdTouch counts touch commands and keys asked for by gat and gats.
	CmdTouch uint64
	// CmdFlush counts flush_all commands.
	CmdFlush uint64
	// GetHits and GetMisses split CmdGet by outcome.
	GetHits, GetMisses uint64
	// TouchHits and TouchMisses split CmdTouch by outcome.
	TouchHits, TouchMisses uint64
	// DeleteHits and DeleteMisses count delete by outcome.
	DeleteHits, DeleteMisses uint64
	// IncrHits, IncrMisses, DecrHits and DecrMisses count incr and decr.
	IncrHits, IncrMisses, DecrHits, DecrMisses uint64
	// CASHits counts cas commands that stored, CASMisses those whose key was
	// missing and CASBadVal those whose cas unique did not match.
	CASHits, CASMisses, CASBadVal uint64
	// CurrItems is the number of items stored, including expired items not
	// yet reclaimed.
	CurrItems uint64
	// TotalItems counts items ever stored.
	TotalItems uint64
	// Bytes is the memory charged for the stored items.
	Bytes uint64
	// Evictions counts live items dropped to make room for others.
	Evictions uint64
	// CurrConnections is the number of open client connections.
	CurrConnections uint64
	// TotalConnections counts connections ever accepted.
	TotalConnections uint64
}

// counters are the server's statistics that are not derived from the store.
type counters struct {
	cmdGet, cmdSet, cmdTouch, cmdFlush         atomic.Uint64
	getHits, getMisses, touchHits, touchMisses atomic.Uint64
	deleteHits, deleteMisses                   atomic.Uint64
	incrHits, incrMisses, decrHits, decrMisses atomic.Uint64
	casHits, casMisses, casBadVal              atomic.Uint64
	currConnections, totalConnections          atomic.Uint64
}

// Stats returns a snapshot of the server's counters. Each counter is read
// atomically, but the snapshot as a whole is not.
func (s *Server) Stats() Stats {
	st := s.store.stats()
	c := &s.stats
	return Stats{
		CmdGet:           c.cmdGet.Load(),
		CmdSet:           c.cmdSet.Load(),
		CmdTouch:         c.cmdTouch.Load(),
		CmdFlush:         c.cmdFlush.Load(),
		GetHits:          c.getHits.Load(),
		GetMisses:        c.getMisses.Load(),
		TouchHits:        c.touchHits.Load(),
		TouchMisses:      c.touchMisses.Load(),
		DeleteHits:       c.deleteHits.Load(),
		DeleteMisses:     c.deleteMisses.Load(),
		IncrHits:         c.incrHits.Load(),
		IncrMisses:       c.incrMisses.Load(),
		DecrHits:         c.decrHits.Load(),
		DecrMisses:       c.decrMisses.Load(),
		CASHits:          c.casHits.Load(),
		CASMisses:        c.casMisses.Load(),
		CASBadVal:        c.casBadVal.Load(),
		CurrItems:        st.items,
		TotalItems:       st.totalItems,
		Bytes:            uint64(st.bytes),
		Evictions:        st.evictions,
		CurrConnections:  c.currConnections.Load(),
		TotalConnections: c.totalConnections.Load(),
	}
}

// writeStats writes the reply to "stats": STAT lines, then END.
func (s *Server) writeStats(w *bufio.Writer) {
	st := s.Stats()
	now := s.store.now()
	stat := func(name string, v uint64) {
		w.WriteString("STAT " + name + " ")
		w.Write(strconv.AppendUint(nil, v, 10))
		w.WriteString("\r\n")
	}
	stat("pid", uint64(os.Getpid()))
	stat("uptime", uint64(max(0, now.Sub(s.start).Seconds())))
	stat("time", uint64(max(0, now.Unix())))
	w.WriteString("STAT version " + Version + "\r\n")
	stat("curr_connections", st.CurrConnections)
	stat("total_connections", st.TotalConnections)
	stat("cmd_get", st.CmdGet)
	stat("cmd_set", st.CmdSet)
	stat("cmd_flush", st.CmdFlush)
	stat("cmd_touch", st.CmdTouch)
	stat("get_hits", st.GetHits)
	stat("get_misses", st.GetMisses)
	stat("delete_misses", st.DeleteMisses)
	stat("delete_hits", st.DeleteHits)
	stat("incr_misses", st.IncrMisses)
	stat("incr_hits", st.IncrHits)
	stat("decr_misses", st.DecrMisses)
	stat("decr_hits", st.DecrHits)
	stat("cas_misses", st.CASMisses)
	stat("cas_hits", st.CASHits)
	stat("cas_badval", st.CASBadVal)
	stat("touch_hits", st.TouchHits)
	stat("touch_misses", st.TouchMisses)
	stat("limit_maxbytes", uint64(s.store.maxBytes))
	stat("bytes", st.Bytes)
	stat("curr_items", st.CurrItems)
	stat("total_items", st.TotalItems)
	stat("evictions", st.Evictions)
	w.WriteString("END\r\n")
}
