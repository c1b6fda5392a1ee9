// Command cluster runs a whole shop cluster on this machine and breaks it
// while 200 simulated shoppers fill their carts, to show that mcsession
// keeps every cart through instance and memcached crashes, even when an
// instance and a memcached node die at the same moment.
//
//	go run ./examples/cluster            # the scenario, with SyncBackup: no cart may lose anything
//	go run ./examples/cluster -async     # the same with async backup: reports what the crash window cost
//	go run ./examples/cluster -serve     # keep the cluster up for a browser at http://127.0.0.1:8080/
//
// It starts three memcached nodes (the real memcached when it is installed,
// otherwise an embedded server speaking its protocol), three instances of
// examples/cart as subprocesses (so a crash is a real SIGKILL), and a demo
// sticky load balancer in front. Every process it starts it stops, also on
// Ctrl-C and on failure. From another terminal, stop it with a SIGINT or
// SIGTERM to its own pid, which -serve prints: go run passes no signal on.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.IntVar(&o.shoppers, "shoppers", 200, "simulated shoppers")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "traffic time in all, split evenly over the steps")
	flag.DurationVar(&o.think, "think", 100*time.Millisecond, "mean pause between a shopper's additions")
	flag.BoolVar(&o.async, "async", false, "asynchronous backup instead of SyncBackup")
	flag.BoolVar(&o.serve, "serve", false, "start the cluster and keep it up for a browser (no scenario)")
	flag.BoolVar(&o.embedded, "embedded", false, "use the embedded memcached even if memcached is installed")
	flag.IntVar(&o.port, "port", 0, "balancer port; instances use the next 3, memcached port+3131 to +3133 (default: free ports; 8080 with -serve)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if o.serve && o.port == 0 {
		o.port = 8080
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := run(ctx, o)
	if err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

type options struct {
	shoppers        int
	duration, think time.Duration
	async, serve    bool
	embedded        bool
	port            int
}

// cluster is everything the demo started; close stops all of it.
type cluster struct {
	opts     options
	bin      string // the cart binary
	logDir   string
	keepLogs bool // a failure: leave logDir for a person to read
	nodes    []*cacheNode
	nodeList string // Config.Nodes for the instances
	keys     string // Config.Keys for the instances, in hex: one key, made for this run
	lb       *balancer
	lbURL    string
	lbServer *http.Server
	stopLB   context.CancelFunc

	// mu guards instances and stats.
	mu        sync.Mutex
	instances map[string]*instance
	stats     map[*process]instanceStats // last statistics seen of every process
}

// run starts the cluster and runs the scenario, or with o.serve keeps the
// cluster up until ctx is done. It returns what the check after each step
// found (none with o.serve), and stops everything it started.
func run(ctx context.Context, o options) ([]stepResult, error) {
	dir, err := os.MkdirTemp("", "mcsession-cluster-")
	if err != nil {
		return nil, err
	}
	c := &cluster{opts: o, logDir: dir, instances: make(map[string]*instance), stats: make(map[*process]instanceStats)}
	defer c.close()
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	if o.serve {
		c.printServe(os.Stdout)
		<-ctx.Done()
		fmt.Println("\nstopping")
		return nil, nil
	}
	results, err := c.scenario(ctx)
	if err != nil && !errors.Is(err, errStopped) {
		fmt.Printf("instance logs kept in %s\n", dir)
		c.keepLogs = true
	}
	return results, err
}

// start builds the cart and starts memcached, the instances and the
// balancer.
func (c *cluster) start(ctx context.Context) error {
	fmt.Println("building examples/cart ...")
	bin, err := buildCart(ctx, c.logDir)
	if err != nil {
		return err
	}
	c.bin = bin
	var key [32]byte
	rand.Read(key[:]) // never fails (crypto/rand)
	c.keys = hex.EncodeToString(key[:])

	memcached, note := chooseMemcached(c.opts.embedded, exec.LookPath)
	var specs []string
	for i, id := range []string{"n1", "n2", "n3"} {
		addr, err := c.addr(3131 + i)
		if err != nil {
			return err
		}
		n, err := startCacheNode(id, addr, memcached)
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
		specs = append(specs, id+":"+addr)
	}
	c.nodeList = strings.Join(specs, " ")
	fmt.Printf("memcached: %s (nodes %s)\n", note, c.nodeList)

	c.lb = newBalancer("SESSIONID")
	for i, route := range []string{"app1", "app2", "app3"} {
		addr, err := c.addr(1 + i)
		if err != nil {
			return err
		}
		if err := c.startInstance(route, addr); err != nil {
			return err
		}
		c.lb.add(route, addr)
	}
	lbAddr, err := c.addr(0)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", lbAddr)
	if err != nil {
		return err
	}
	c.lbURL = "http://" + lbAddr
	c.lbServer = &http.Server{Handler: c.lb}
	go c.lbServer.Serve(ln)
	lbCtx, cancel := context.WithCancel(context.Background())
	c.stopLB = cancel
	go c.lb.checkLoop(lbCtx, 200*time.Millisecond)
	mode := "SyncBackup"
	if c.opts.async {
		mode = "async backup"
	}
	fmt.Printf("instances: app1, app2, app3 (examples/cart, %s); demo balancer (not a product) on %s\n", mode, c.lbURL)
	return nil
}

// chooseMemcached decides which memcached the nodes run: the binary
// lookPath finds, or the embedded server (bin ""), because embedded asks
// for it or because there is no binary. note says which and why.
func chooseMemcached(embedded bool, lookPath func(string) (string, error)) (bin, note string) {
	if embedded {
		return "", "embedded in-process server, as -embedded asks"
	}
	bin, err := lookPath("memcached")
	if err != nil {
		return "", "embedded in-process server (memcached not found in PATH; apt-get install memcached for the real one)"
	}
	return bin, "the real one, " + bin
}

// addr returns the address for the component at offset from the base port.
func (c *cluster) addr(offset int) (string, error) {
	if c.opts.port == 0 {
		return addrAt(0)
	}
	return addrAt(c.opts.port + offset)
}

func (c *cluster) startInstance(route, addr string) error {
	in, err := startInstance(c.bin, route, addr, c.nodeList, c.keys, !c.opts.async, c.logDir)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.instances[route] = in
	c.mu.Unlock()
	return nil
}

func (c *cluster) instance(route string) *instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.instances[route]
}

// node returns the memcached node with id, or nil.
func (c *cluster) node(id string) *cacheNode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// running returns the routes of the instances and the ids of the memcached
// nodes that are running, sorted.
func (c *cluster) running() (routes, nodes []string) {
	c.mu.Lock()
	for route := range c.instances {
		routes = append(routes, route)
	}
	c.mu.Unlock()
	slices.Sort(routes)
	for _, n := range c.nodes {
		if !n.down.Load() {
			nodes = append(nodes, n.id)
		}
	}
	return routes, nodes
}

// describeUp says which instances and memcached nodes are running, as the
// scenario prints it: "instances app1, app3; memcached n2, n3".
func describeUp(routes, nodes []string) string {
	return fmt.Sprintf("%s %s; memcached %s", plural(len(routes), "instance"), orNone(routes), orNone(nodes))
}

// orNone joins names with commas, or returns "none".
func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// plural returns noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// close stops everything: instances gracefully (then killed), memcached,
// the balancer. It is safe after a partial start.
func (c *cluster) close() {
	if c.stopLB != nil {
		c.stopLB() // no health checks of instances being stopped
	}
	c.mu.Lock()
	instances := c.instances
	c.instances = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.proc.stop(5 * time.Second)
		}()
	}
	wg.Wait()
	for _, n := range c.nodes {
		n.crash()
	}
	if c.lbServer != nil {
		c.lbServer.Close()
	}
	if !c.keepLogs {
		os.RemoveAll(c.logDir)
	}
}

// printServe prints what -serve started and how to crash and stop it.
func (c *cluster) printServe(w io.Writer) {
	fmt.Fprintf(w, "\nThe shop: %s/  (through the demo balancer)\n\n", c.lbURL)
	for _, route := range []string{"app1", "app2", "app3"} {
		in := c.instance(route)
		fmt.Fprintf(w, "  instance %s  http://%s/  pid %d   crash it: kill -9 %d\n", route, in.addr, in.proc.pid(), in.proc.pid())
	}
	for _, n := range c.nodes {
		if n.proc != nil {
			fmt.Fprintf(w, "  memcached %s  %s  pid %d   crash it: kill -9 %d\n", n.id, n.addr, n.proc.pid(), n.proc.pid())
		} else {
			fmt.Fprintf(w, "  memcached %s  %s  (embedded: install memcached to crash nodes by hand)\n", n.id, n.addr)
		}
	}
	fmt.Fprintln(w, "\nAdd items, crash the instance named at the top of the page, reload: the cart is still there.")
	// go run starts the demo as a child and does not pass signals on: a
	// kill -INT of go run's pid would stop nothing.
	pid := os.Getpid()
	fmt.Fprintf(w, "Ctrl-C stops everything, as does kill -INT %d (the demo's pid; not go run's, which passes no signal on).\n", pid)
}

// errStopped reports that the scenario was interrupted.
var errStopped = errors.New("interrupted")
