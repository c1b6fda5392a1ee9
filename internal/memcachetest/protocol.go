package memcachetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Stats holds the counters memcached reports for "stats". Counters count
// since the process started, so they restart at zero after Restart.
type Stats struct {
	// CmdGet counts keys asked for by get, gets and mg: a get of three
	// keys adds three. gat and gats count as CmdTouch, not CmdGet.
	CmdGet uint64
	// CmdSet counts storage commands (set, add, replace, append, prepend,
	// cas, ms), whether or not they stored anything.
	CmdSet uint64
	// CmdTouch counts touch, gat and gats.
	CmdTouch uint64
	// CmdFlush counts flush_all.
	CmdFlush uint64
	// DeleteHits and DeleteMisses count delete and md by outcome.
	DeleteHits, DeleteMisses uint64
	// GetHits and GetMisses split CmdGet by outcome.
	GetHits, GetMisses uint64
	// TouchHits and TouchMisses split CmdTouch by outcome.
	TouchHits, TouchMisses uint64
	// IncrHits, IncrMisses, DecrHits and DecrMisses count incr and decr,
	// which have no cmd_ counter of their own.
	IncrHits, IncrMisses, DecrHits, DecrMisses uint64
	// CurrItems is the number of items stored.
	CurrItems uint64
	// CurrConnections is the number of open client connections, including
	// the one that asked for the stats. Closed connections are reaped
	// asynchronously, so poll rather than assert an exact value at once.
	CurrConnections uint64
	// Raw holds every "STAT name value" line, by name.
	Raw map[string]string
}

// Ops returns the number of data operations the server has handled:
// CmdGet + CmdSet + CmdTouch + DeleteHits + DeleteMisses + incr and decr hits
// and misses. It excludes stats, version, flush_all and lru_crawler, so
// [Server.Stats] and [Server.Keys] do not change it, while [Server.Get] and
// [Server.Set] add one each. cas is already part of CmdSet.
func (s Stats) Ops() uint64 {
	return s.CmdGet + s.CmdSet + s.CmdTouch + s.DeleteHits + s.DeleteMisses +
		s.IncrHits + s.IncrMisses + s.DecrHits + s.DecrMisses
}

// Stats fetches the server's counters over a fresh connection with a 2s
// deadline. It returns an error if the server is killed or paused.
func (s *Server) Stats() (Stats, error) {
	return stats(s.addr, ioTimeout)
}

// Ops returns Stats().Ops(), failing the test with t.Fatalf if the stats
// cannot be read. Call it from the test's goroutine.
func (s *Server) Ops(t testing.TB) uint64 {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return st.Ops()
}

// Get fetches key with the raw text protocol over a fresh connection with a
// 2s deadline. A miss is (nil, false, nil). It counts as one cmd_get.
func (s *Server) Get(key string) (value []byte, found bool, err error) {
	return get(s.addr, key, ioTimeout)
}

// Set stores value under key with flags 0 and ttl seconds (0: no expiry)
// using the raw text protocol, bypassing any client encoding; tests use it
// to plant corrupt blobs. It counts as one cmd_set. A reply other than
// STORED, e.g. SERVER_ERROR for a value over the item size limit, is an
// error.
func (s *Server) Set(key string, value []byte, ttl int) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return roundTrip(s.addr, ioTimeout, func(c *conn) error {
		cmd := fmt.Sprintf("set %s 0 %d %d\r\n", key, ttl, len(value))
		buf := make([]byte, 0, len(cmd)+len(value)+2)
		buf = append(append(append(buf, cmd...), value...), "\r\n"...)
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("memcachetest: set %q on %s: %w", key, s.addr, err)
		}
		line, err := c.readLine()
		if err != nil {
			return fmt.Errorf("memcachetest: set %q on %s: %w", key, s.addr, err)
		}
		if line != "STORED" {
			return fmt.Errorf("memcachetest: set %q on %s: reply %q", key, s.addr, line)
		}
		return nil
	})
}

// Flush empties the cache with flush_all. It counts as one cmd_flush and no
// data operation.
func (s *Server) Flush() error {
	return roundTrip(s.addr, ioTimeout, func(c *conn) error {
		line, err := c.command("flush_all")
		if err == nil && line != "OK" {
			err = fmt.Errorf("reply %q", line)
		}
		if err != nil {
			return fmt.Errorf("memcachetest: flush_all on %s: %w", s.addr, err)
		}
		return nil
	})
}

// Keys lists the keys currently stored, sorted and without duplicates, using "lru_crawler metadump
// all", which counts as no get and leaves LRU order alone. Expired items are
// not listed. memcached URL-escapes the names in the dump; Keys returns
// them decoded. While another crawl is running memcached answers BUSY, and
// Keys retries for up to 2s.
func (s *Server) Keys() ([]string, error) {
	deadline := time.Now().Add(ioTimeout)
	for {
		var keys []string
		busy := false
		err := roundTrip(s.addr, time.Until(deadline), func(c *conn) error {
			// metadump must be the only command in the read buffer:
			// memcached answers a pipelined one with an error.
			if _, err := io.WriteString(c, "lru_crawler metadump all\r\n"); err != nil {
				return err
			}
			var err error
			keys, busy, err = readMetadump(c.r)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("memcachetest: metadump on %s: %w", s.addr, err)
		}
		if !busy {
			// The crawler walks the LRU segments while items move between
			// them (hot, warm, cold), so it can list an item twice.
			slices.Sort(keys)
			return slices.Compact(keys), nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("memcachetest: metadump on %s: crawler busy for %v", s.addr, ioTimeout)
		}
		time.Sleep(pollInterval) // poll until the crawler is free or the deadline
	}
}

// readMetadump reads metadump lines ("key=<escaped> exp=... la=... ...")
// up to END. busy reports memcached's "BUSY" answer.
func readMetadump(r *bufio.Reader) (keys []string, busy bool, err error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, false, err
		}
		switch {
		case line == "END":
			return keys, false, nil
		case strings.HasPrefix(line, "BUSY"):
			return nil, true, nil
		case strings.HasPrefix(line, "key="):
			field, _, _ := strings.Cut(line[len("key="):], " ")
			key, err := url.PathUnescape(field)
			if err != nil {
				return nil, false, fmt.Errorf("bad key in %q: %w", line, err)
			}
			keys = append(keys, key)
		default:
			return nil, false, fmt.Errorf("unexpected line %q", line)
		}
	}
}

// stats runs "stats" against addr.
func stats(addr string, timeout time.Duration) (Stats, error) {
	var st Stats
	err := roundTrip(addr, timeout, func(c *conn) error {
		if _, err := io.WriteString(c, "stats\r\n"); err != nil {
			return err
		}
		var err error
		st, err = readStats(c.r)
		return err
	})
	if err != nil {
		return Stats{}, fmt.Errorf("memcachetest: stats from %s: %w", addr, err)
	}
	return st, nil
}

// readStats parses "STAT name value" lines up to END.
func readStats(r *bufio.Reader) (Stats, error) {
	st := Stats{Raw: make(map[string]string)}
	counters := map[string]*uint64{
		"cmd_get":          &st.CmdGet,
		"cmd_set":          &st.CmdSet,
		"cmd_touch":        &st.CmdTouch,
		"cmd_flush":        &st.CmdFlush,
		"delete_hits":      &st.DeleteHits,
		"delete_misses":    &st.DeleteMisses,
		"get_hits":         &st.GetHits,
		"get_misses":       &st.GetMisses,
		"touch_hits":       &st.TouchHits,
		"touch_misses":     &st.TouchMisses,
		"incr_hits":        &st.IncrHits,
		"incr_misses":      &st.IncrMisses,
		"decr_hits":        &st.DecrHits,
		"decr_misses":      &st.DecrMisses,
		"curr_items":       &st.CurrItems,
		"curr_connections": &st.CurrConnections,
	}
	for {
		line, err := readLine(r)
		if err != nil {
			return Stats{}, err
		}
		if line == "END" {
			break
		}
		rest, ok := strings.CutPrefix(line, "STAT ")
		if !ok {
			return Stats{}, fmt.Errorf("unexpected line %q", line)
		}
		name, value, _ := strings.Cut(rest, " ")
		st.Raw[name] = value
		if p := counters[name]; p != nil {
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return Stats{}, fmt.Errorf("stat %s: %w", name, err)
			}
			*p = n
		}
	}
	for name := range counters {
		if _, ok := st.Raw[name]; !ok {
			return Stats{}, fmt.Errorf("stat %s missing", name)
		}
	}
	return st, nil
}

// get runs "get key" against addr with the given deadline.
func get(addr, key string, timeout time.Duration) (value []byte, found bool, err error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	err = roundTrip(addr, timeout, func(c *conn) error {
		line, err := c.command("get " + key)
		if err != nil {
			return err
		}
		if line == "END" {
			return nil
		}
		fields := strings.Fields(line)
		if len(fields) != 4 || fields[0] != "VALUE" || fields[1] != key {
			return fmt.Errorf("unexpected reply %q", line)
		}
		n, err := strconv.Atoi(fields[3])
		if err != nil || n < 0 {
			return fmt.Errorf("bad length in %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return err
		}
		if string(buf[n:]) != "\r\n" {
			return errors.New("value not terminated by CRLF")
		}
		if line, err = c.readLine(); err != nil {
			return err
		}
		if line != "END" {
			return fmt.Errorf("unexpected line %q after value", line)
		}
		value, found = buf[:n], true
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("memcachetest: get %q from %s: %w", key, addr, err)
	}
	return value, found, nil
}

// checkKey rejects keys the text protocol cannot carry.
func checkKey(key string) error {
	if key == "" || len(key) > 250 {
		return fmt.Errorf("memcachetest: invalid key %q: length %d not in 1..250", key, len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] == 0x7f {
			return fmt.Errorf("memcachetest: invalid key %q: control or space character", key)
		}
	}
	return nil
}

// conn is one short-lived text-protocol connection.
type conn struct {
	net.Conn
	r *bufio.Reader
}

// roundTrip dials addr, sets a deadline of timeout for the whole exchange,
// runs fn and closes the connection.
func roundTrip(addr string, timeout time.Duration, fn func(*conn) error) error {
	if timeout <= 0 {
		return fmt.Errorf("dial %s: %w", addr, errTimeout)
	}
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	return fn(&conn{Conn: nc, r: bufio.NewReader(nc)})
}

// errTimeout is returned when a deadline has passed before dialing.
var errTimeout = errors.New("deadline exceeded")

// command sends one line and reads the one-line reply, turning memcached's
// error replies into errors.
func (c *conn) command(line string) (string, error) {
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		return "", err
	}
	return c.readLine()
}

func (c *conn) readLine() (string, error) {
	line, err := readLine(c.r)
	if err != nil {
		return "", err
	}
	if line == "ERROR" || strings.HasPrefix(line, "CLIENT_ERROR") || strings.HasPrefix(line, "SERVER_ERROR") {
		return "", fmt.Errorf("memcached replied %q", line)
	}
	return line, nil
}

// readLine reads one CRLF-terminated line without the terminator.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && line != "" {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
