package memcacheserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
)

const (
	// maxLine bounds a command line, including its "\r\n". memcached closes
	// a connection whose line has no newline within 2048 bytes.
	maxLine = 2048
	// maxRetrievalLine bounds get, gets, gat and gats lines, which may be
	// longer because they list many keys (memcached does not bound them).
	maxRetrievalLine = 1 << 20
	// maxKey is memcached's key length limit.
	maxKey = 250
)

// Reply lines used in more than one place.
const (
	replyError     = "ERROR"
	replyBadFormat = "CLIENT_ERROR bad command line format"
	replyExptime   = "CLIENT_ERROR invalid exptime argument"
)

// errCloseConn ends a connection: the client quit, sent an overlong line,
// or went away.
var errCloseConn = errors.New("memcacheserver: close connection")

// conn is the protocol state of one client connection.
type conn struct {
	s       *Server
	r       *bufio.Reader
	w       *bufio.Writer
	long    []byte // holds a retrieval line longer than r's buffer
	noreply bool   // the current command asked for no reply
}

// flushingReader flushes pending replies before every read from the
// client, which bufio.Reader does only when its buffer is empty: pipelined
// commands get their replies in one write, and the client never waits for
// a reply still sitting in the buffer.
type flushingReader struct {
	r io.Reader
	w *bufio.Writer
}

func (f flushingReader) Read(p []byte) (int, error) {
	if err := f.w.Flush(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}

// serve runs the protocol on one connection until r fails or ends, the
// client quits, or a write fails.
func (s *Server) serve(r io.Reader, w io.Writer) {
	bw := bufio.NewWriter(w)
	c := &conn{s: s, w: bw, r: bufio.NewReaderSize(flushingReader{r, bw}, maxLine)}
	for {
		line, err := c.readLine()
		if err == nil {
			err = c.dispatch(line)
		}
		if err != nil {
			bw.Flush()
			return
		}
	}
}

// readLine returns the next command line without its "\n" or "\r\n". The
// line is valid until the next read from c.r.
func (c *conn) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Like memcached, only a multi-key retrieval may be this long.
		cmd, _, _ := bytes.Cut(bytes.TrimLeft(line, " "), []byte{' '})
		if !isRetrieval(string(cmd)) {
			return nil, errCloseConn
		}
		c.long = append(c.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(c.long) <= maxRetrievalLine {
			line, err = c.r.ReadSlice('\n')
			c.long = append(c.long, line...)
		}
		if len(c.long) > maxRetrievalLine {
			return nil, errCloseConn
		}
		line = c.long
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}

func isRetrieval(cmd string) bool {
	return cmd == "get" || cmd == "gets" || cmd == "gat" || cmd == "gats"
}

// reply writes one reply line unless the command asked for noreply.
func (c *conn) reply(line string) {
	if !c.noreply {
		c.w.WriteString(line)
		c.w.WriteString("\r\n")
	}
}

// tokens splits a command line at spaces, as memcached does: tabs and
// other bytes belong to the tokens.
func tokens(line []byte) [][]byte {
	var toks [][]byte
	for _, t := range bytes.Split(line, []byte{' '}) {
		if len(t) > 0 {
			toks = append(toks, t)
		}
	}
	return toks
}

// validKey reports whether k is a legal key: 1 to 250 bytes, no control
// characters.
func validKey(k []byte) bool {
	if len(k) == 0 || len(k) > maxKey {
		return false
	}
	for _, b := range k {
		if b < ' ' || b == 0x7f {
			return false
		}
	}
	return true
}

// dispatch runs one command line. It returns an error only when the
// connection must end.
func (c *conn) dispatch(line []byte) error {
	c.noreply = false
	toks := tokens(line)
	if len(toks) == 0 {
		c.reply(replyError)
		return nil
	}
	cmd, args := string(toks[0]), toks[1:]
	// withNoreply checks the number of arguments and notes a trailing
	// noreply, which a command may carry after its minArgs arguments. Like
	// memcached, noreply silences error replies too, but not ERROR for a
	// wrong number of arguments.
	withNoreply := func(minArgs, maxArgs int) bool {
		if len(args) < minArgs || len(args) > maxArgs {
			c.reply(replyError)
			return false
		}
		c.noreply = len(args) > minArgs && string(args[len(args)-1]) == "noreply"
		return true
	}
	switch cmd {
	case "get", "gets", "gat", "gats":
		c.retrieve(cmd, args)
	case "set", "add", "replace", "append", "prepend":
		if withNoreply(4, 5) {
			return c.storage(cmd, args)
		}
	case "cas":
		if withNoreply(5, 6) {
			return c.storage(cmd, args)
		}
	case "touch":
		if withNoreply(2, 3) {
			c.touch(args)
		}
	case "delete":
		if withNoreply(1, 3) {
			c.delete(args)
		}
	case "incr", "decr":
		if withNoreply(2, 3) {
			c.incr(cmd == "incr", args)
		}
	case "flush_all":
		if withNoreply(0, 2) {
			c.flushAll(args)
		}
	case "verbosity":
		if withNoreply(1, 2) {
			c.reply("OK")
		}
	case "version":
		if withNoreply(0, 0) {
			c.reply("VERSION " + Version)
		}
	case "stats":
		if withNoreply(0, 0) {
			c.s.writeStats(c.w)
		}
	case "quit":
		return errCloseConn
	default:
		c.reply(replyError)
	}
	return nil
}

// retrieve answers get, gets, gat and gats. All keys are checked before any
// is looked up, so a bad key yields only a CLIENT_ERROR.
func (c *conn) retrieve(cmd string, args [][]byte) {
	touch := cmd == "gat" || cmd == "gats"
	var exptime int64
	if touch {
		if len(args) < 2 {
			c.reply(replyError)
			return
		}
		var err error
		if exptime, err = strconv.ParseInt(string(args[0]), 10, 32); err != nil {
			c.reply(replyExptime)
			return
		}
		args = args[1:]
	}
	if len(args) == 0 {
		c.reply(replyError)
		return
	}
	for _, k := range args {
		if !validKey(k) {
			c.reply(replyBadFormat)
			return
		}
	}
	st := &c.s.stats
	var buf []byte
	for _, k := range args {
		it, ok := c.s.store.get(string(k), touch, exptime)
		if touch {
			st.cmdTouch.Add(1)
			count(ok, &st.touchHits, &st.touchMisses)
		} else {
			st.cmdGet.Add(1)
			count(ok, &st.getHits, &st.getMisses)
		}
		if !ok {
			continue
		}
		buf = append(buf[:0], "VALUE "...)
		buf = append(buf, it.key...)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(it.flags), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, int64(len(it.value)), 10)
		if cmd == "gets" || cmd == "gats" {
			buf = append(buf, ' ')
			buf = strconv.AppendUint(buf, it.cas, 10)
		}
		buf = append(buf, "\r\n"...)
		c.w.Write(buf)
		c.w.Write(it.value)
		c.w.WriteString("\r\n")
	}
	c.reply("END")
}

// count adds one to hit if ok, else to miss.
func count(ok bool, hit, miss interface{ Add(uint64) uint64 }) {
	if ok {
		hit.Add(1)
	} else {
		miss.Add(1)
	}
}

// storage runs set, add, replace, append, prepend and cas, reading the data
// block that follows the command line. A malformed line leaves the data
// block unread, as in memcached, so it is then read as a command.
func (c *conn) storage(cmd string, args [][]byte) error {
	flags, err1 := strconv.ParseUint(string(args[1]), 10, 32)
	exptime, err2 := strconv.ParseInt(string(args[2]), 10, 32)
	n, err3 := strconv.ParseInt(string(args[3]), 10, 32)
	var casID uint64
	var err4 error
	if cmd == "cas" {
		casID, err4 = strconv.ParseUint(string(args[4]), 10, 64)
	}
	if !validKey(args[0]) || err1 != nil || err2 != nil || err3 != nil || err4 != nil ||
		n < 0 || n > math.MaxInt32-2 {
		c.reply(replyBadFormat)
		return nil
	}
	key := string(args[0]) // copied: reading the data invalidates args
	if n > int64(c.s.store.maxItemSize) {
		c.reply("SERVER_ERROR object too large for cache")
		if cmd == "set" {
			c.s.store.delete(key) // a failed set must not leave the old value visible
		}
		_, err := io.CopyN(io.Discard, c.r, n+2) // swallow the data in small chunks
		return err
	}
	data := make([]byte, n+2)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return err
	}
	c.s.stats.cmdSet.Add(1)
	if data[n] != '\r' || data[n+1] != '\n' {
		c.reply("CLIENT_ERROR bad data chunk")
		return nil
	}
	mode := storageMode(cmd)
	res := c.s.store.set(mode, key, uint32(flags), exptime, data[:n:n], casID)
	if mode == modeCAS {
		st := &c.s.stats
		switch res {
		case resultStored:
			st.casHits.Add(1)
		case resultNotFound:
			st.casMisses.Add(1)
		case resultExists:
			st.casBadVal.Add(1)
		}
	}
	if res == resultNoMemory {
		c.noreply = false // memcached reports running out of memory even with noreply
	}
	c.reply(res.String())
	return nil
}

func storageMode(cmd string) storeMode {
	switch cmd {
	case "add":
		return modeAdd
	case "replace":
		return modeReplace
	case "append":
		return modeAppend
	case "prepend":
		return modePrepend
	case "cas":
		return modeCAS
	}
	return modeSet
}

// touch runs "touch <key> <exptime> [noreply]".
func (c *conn) touch(args [][]byte) {
	if !validKey(args[0]) {
		c.reply(replyBadFormat)
		return
	}
	exptime, err := strconv.ParseInt(string(args[1]), 10, 32)
	if err != nil {
		c.reply(replyExptime)
		return
	}
	st := &c.s.stats
	st.cmdTouch.Add(1)
	ok := c.s.store.touch(string(args[0]), exptime)
	count(ok, &st.touchHits, &st.touchMisses)
	if ok {
		c.reply("TOUCHED")
	} else {
		c.reply("NOT_FOUND")
	}
}

// delete runs "delete <key> [0] [noreply]"; the 0 is a relic of the
// removed delete delay that memcached still accepts.
func (c *conn) delete(args [][]byte) {
	extra := args[1:]
	if c.noreply {
		extra = extra[:len(extra)-1]
	}
	if len(extra) > 1 || (len(extra) == 1 && string(extra[0]) != "0") {
		c.reply("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]")
		return
	}
	if !validKey(args[0]) {
		c.reply(replyBadFormat)
		return
	}
	ok := c.s.store.delete(string(args[0]))
	count(ok, &c.s.stats.deleteHits, &c.s.stats.deleteMisses)
	if ok {
		c.reply("DELETED")
	} else {
		c.reply("NOT_FOUND")
	}
}

// incr runs "incr|decr <key> <delta> [noreply]".
func (c *conn) incr(up bool, args [][]byte) {
	if !validKey(args[0]) {
		c.reply(replyBadFormat)
		return
	}
	delta, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.reply("CLIENT_ERROR invalid numeric delta argument")
		return
	}
	n, res := c.s.store.incr(string(args[0]), delta, up)
	st := &c.s.stats
	if res != incrNonNumeric { // memcached counts neither hit nor miss for these
		if up {
			count(res != incrNotFound, &st.incrHits, &st.incrMisses)
		} else {
			count(res != incrNotFound, &st.decrHits, &st.decrMisses)
		}
	}
	switch res {
	case incrOK:
		c.reply(strconv.FormatUint(n, 10))
	case incrNotFound:
		c.reply("NOT_FOUND")
	case incrNonNumeric:
		c.reply("CLIENT_ERROR cannot increment or decrement non-numeric value")
	case incrNoMemory:
		c.noreply = false
		c.reply("SERVER_ERROR out of memory")
	}
}

// flushAll runs "flush_all [delay] [noreply]".
func (c *conn) flushAll(args [][]byte) {
	if c.noreply {
		args = args[:len(args)-1]
	}
	var delay int64
	if len(args) > 0 {
		var err error
		if delay, err = strconv.ParseInt(string(args[0]), 10, 32); err != nil {
			c.reply(replyBadFormat)
			return
		}
	}
	c.s.stats.cmdFlush.Add(1)
	c.s.store.flush(delay)
	c.reply("OK")
}
