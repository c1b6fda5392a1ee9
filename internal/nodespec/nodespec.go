// Package nodespec parses memcached node lists of the form
// "n1:host:port n2:host:port" and failover lists of the form "n1 n2".
package nodespec

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
)

// MaxIDLen is the longest node id accepted. Node ids travel in every session
// ID, so they are kept short.
const MaxIDLen = 32

// DefaultID is the id given to a node configured as a lone "host:port".
const DefaultID = "n1"

// Node is one memcached node.
type Node struct {
	ID       string // matches \w+, at most MaxIDLen bytes
	Addr     string // host:port
	Failover bool   // used only when no primary node is up
}

// Parse parses a node list and a failover list. Entries are separated by
// spaces or commas. A list holding a single "host:port" (or "[v6]:port") is
// one node with id DefaultID. Every failover id must name a node, and at least
// one node must be a primary (not failover). An empty node list is valid and
// yields no nodes; the failover list must then be empty too.
func Parse(nodes, failover string) ([]Node, error) {
	out, err := parseNodes(split(nodes))
	if err != nil {
		return nil, err
	}
	if err := markFailover(out, split(failover)); err != nil {
		return nil, err
	}
	return out, nil
}

// parseNodes parses the entries of a node list: one bare address, or
// id:host:port entries with distinct ids and addresses.
func parseNodes(fields []string) ([]Node, error) {
	if len(fields) == 1 && !hasID(fields[0]) {
		if err := checkAddr(fields[0]); err != nil {
			return nil, fmt.Errorf("node %q: %w", fields[0], err)
		}
		return []Node{{ID: DefaultID, Addr: fields[0]}}, nil
	}
	var out []Node
	seenAddr := make(map[string]string)
	for _, f := range fields {
		n, err := parseNode(f)
		if err != nil {
			return nil, err
		}
		if index(out, n.ID) >= 0 {
			return nil, fmt.Errorf("node id %q appears twice", n.ID)
		}
		if other, dup := seenAddr[n.Addr]; dup {
			return nil, fmt.Errorf("nodes %q and %q have the same address %s", other, n.ID, n.Addr)
		}
		seenAddr[n.Addr] = n.ID
		out = append(out, n)
	}
	return out, nil
}

// parseNode parses one id:host:port entry.
func parseNode(f string) (Node, error) {
	id, addr, ok := strings.Cut(f, ":")
	if !ok || !hasID(f) {
		return Node{}, fmt.Errorf("node %q: want id:host:port, for example n1:10.0.0.1:11211", f)
	}
	if err := CheckID(id); err != nil {
		return Node{}, fmt.Errorf("node %q: %w", f, err)
	}
	if err := checkAddr(addr); err != nil {
		return Node{}, fmt.Errorf("node %q: %w", f, err)
	}
	return Node{ID: id, Addr: addr}, nil
}

// markFailover marks the nodes named by ids as failover nodes. Every id
// must name a node, and some node must remain a primary.
func markFailover(nodes []Node, ids []string) error {
	for _, id := range ids {
		i := index(nodes, id)
		if i < 0 {
			return fmt.Errorf("failover node %q is not in the node list", id)
		}
		nodes[i].Failover = true
	}
	if len(nodes) > 0 && !slices.ContainsFunc(nodes, func(n Node) bool { return !n.Failover }) {
		return errors.New("every node is a failover node; at least one must be a primary")
	}
	return nil
}

// CheckID reports whether id is a valid node id: 1..MaxIDLen characters from
// [A-Za-z0-9_].
func CheckID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("node id must be 1..%d characters", MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !IsWordByte(id[i]) {
			return fmt.Errorf("node id %q may hold only letters, digits and _", id)
		}
	}
	return nil
}

// IsWordByte reports whether c is in [A-Za-z0-9_].
func IsWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func split(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// hasID reports whether f looks like id:host:port rather than host:port:
// an IPv6 literal starts with '[', and host:port has exactly one colon.
func hasID(f string) bool {
	return !strings.HasPrefix(f, "[") && strings.Count(f, ":") >= 2
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: %v", addr, err)
	}
	if host == "" {
		return fmt.Errorf("bad address %q: no host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad address %q: port must be 1..65535", addr)
	}
	return nil
}

func index(nodes []Node, id string) int {
	for i, n := range nodes {
		if n.ID == id {
			return i
		}
	}
	return -1
}
