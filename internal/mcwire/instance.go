package mcwire

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// Instance identifies the memcached process behind a Node: its process id
// and how long it has run. A different pid, or an uptime lower than before,
// means the server restarted, and lost every item.
type Instance struct {
	PID    uint64
	Uptime uint64 // seconds
}

// Restarted reports whether now is a later look at a server that is no
// longer the process prev was.
func (prev Instance) Restarted(now Instance) bool {
	return now.PID != prev.PID || now.Uptime < prev.Uptime
}

// Instance asks the server for its pid and uptime with the stats command
// (one round trip), on a pooled connection. A pooled connection the server
// has closed since (a restart: exactly what Instance is for) is replaced
// once by a fresh one.
func (n *Node) Instance() (inst Instance, err error) {
	err = n.setter.run(func(c *setConn) (bool, error) {
		inst, err = c.instance(n.setter.timeout)
		return false, err
	})
	return inst, err
}

// instance sends "stats" and reads the reply up to END.
func (c *setConn) instance(timeout time.Duration) (Instance, error) {
	var inst Instance
	if err := c.nc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return inst, err
	}
	c.w.WriteString("stats\r\n")
	if err := c.w.Flush(); err != nil {
		return inst, err
	}
	seen := 0
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return inst, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if string(line) == "END" {
			break
		}
		name, value, ok := bytes.Cut(bytes.TrimPrefix(line, []byte("STAT ")), []byte(" "))
		if !ok {
			return inst, &ReplyError{Line: string(line)}
		}
		switch string(name) {
		case "pid":
			inst.PID, err = strconv.ParseUint(string(value), 10, 64)
			seen++
		case "uptime":
			inst.Uptime, err = strconv.ParseUint(string(value), 10, 64)
			seen++
		}
		if err != nil {
			return inst, &ReplyError{Line: string(line)}
		}
	}
	if seen != 2 {
		return inst, fmt.Errorf("stats reply without pid and uptime: %w", &ReplyError{Line: "END"})
	}
	return inst, nil
}
