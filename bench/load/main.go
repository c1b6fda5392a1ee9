// Command load is the HTTP load run of the benchmark suite: workload (c),
// 90% GET /read and 10% POST /write spread over many sessions with small
// carts, against every contender of package contenders in turn, over real
// HTTP on loopback, with two real memcached processes for the contenders
// that need them.
//
// Run it from the repository root:
//
//	go run ./bench/load
//	go run ./bench/load -contenders bare,mcsession/async -duration 3s
//
// Flags: -duration (measured time per contender, 5s), -warmup (2s),
// -sessions (10000), -items (cart size, 3), -conns (32), -write-pct (10),
// -contenders (comma list; "mcsession" selects every mcsession/*), -gen
// (auto, wrk or go), -rounds (1: run the contenders that many times,
// interleaved, and report medians: on a shared two-core machine one round's
// figures move by 10-20% from run to run). MCLOAD_CPUPROFILE=dir writes each
// server's CPU and allocation profiles there; MCLOAD_STATS=1 makes each
// server print its context switches and, for mcsession, its Stats (batch
// sizes, skipped backups) to stderr when it stops. Progress goes to stderr, the markdown report to
// stdout. Memcached must be on PATH for the contenders that need it; without
// it they are skipped, and said so.
//
// Setup. The machine this suite is meant for has two cores, so whatever
// generates the load takes CPU from the server being measured. To keep that
// cost small and identical for every contender:
//
//   - each contender's server runs in a fresh child process (this binary
//     re-executed with the hidden -serve flag, default GOMAXPROCS), so no
//     contender inherits another's heap, goroutines or GC pacing, and its
//     CPU time can be read from /proc;
//   - the load comes from wrk (C, one thread, epoll) when it is installed,
//     with a Lua script that picks a random session and the 90/10 method
//     from requests formatted once in advance; otherwise from a Go
//     generator in this process (-gen go forces it);
//   - sessions are created with POST /login by this process before the
//     clock starts, and memcached is flushed between contenders.
//
// Every contender gets the same generator, connections, warm-up and
// measured window. The numbers are for comparing contenders with each
// other on one machine, not the capacity of any of them: the server,
// the generator and memcached share the same cores.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcsession/mcsession/bench/contenders"
	"github.com/mcsession/mcsession/internal/childproc"
)

// options are the command-line flags of a load run.
type options struct {
	duration   time.Duration
	warmup     time.Duration
	sessions   int
	items      int
	conns      int
	writePct   int
	contenders string
	gen        string
	rounds     int
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var serveName, serveNodes string
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per contender")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up time per contender, not measured")
	flag.IntVar(&o.sessions, "sessions", 10000, "sessions created before the run; requests pick one at random")
	flag.IntVar(&o.items, "items", 3, "cart items per session (POST /login?items=N)")
	flag.IntVar(&o.conns, "conns", 32, "concurrent keep-alive connections")
	flag.IntVar(&o.writePct, "write-pct", 10, "percentage of requests that are POST /write (the rest are GET /read)")
	flag.StringVar(&o.contenders, "contenders", "", "comma-separated contender names to run (a name also selects name/*); empty: all")
	flag.StringVar(&o.gen, "gen", "auto", "load generator: auto (wrk if installed, else go), wrk or go")
	flag.IntVar(&o.rounds, "rounds", 1, "run every contender this many times, interleaved; the table shows the median round and the range of the ratio to bare")
	// Hidden: the child-process server.
	flag.StringVar(&serveName, "serve", "", "")
	flag.StringVar(&serveNodes, "nodes", "", "")
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "load: unexpected arguments: %q\n", flag.Args())
		return 2
	}
	if serveName != "" {
		return serve(serveName, serveNodes)
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(os.Stderr, "load: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runLoad(ctx, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "load: interrupted: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "load: FAILED: %v\n", err)
		}
		return 1
	}
	return 0
}

func usage() {
	w := flag.CommandLine.Output()
	fmt.Fprintf(w, "usage: go run ./bench/load [flags]\n\n")
	fmt.Fprintf(w, "HTTP load run of workload (c) against every contender, on loopback.\n\nflags:\n")
	flag.VisitAll(func(f *flag.Flag) {
		if f.Name == "serve" || f.Name == "nodes" {
			return
		}
		fmt.Fprintf(w, "  -%s (default %q)\n    \t%s\n", f.Name, f.DefValue, f.Usage)
	})
}

func (o options) check() error {
	switch {
	case o.duration < time.Second:
		return errors.New("-duration must be at least 1s")
	case o.warmup < 0:
		return errors.New("-warmup must not be negative")
	case o.sessions < 1:
		return errors.New("-sessions must be at least 1")
	case o.items < 0:
		return errors.New("-items must not be negative")
	case o.conns < 1:
		return errors.New("-conns must be at least 1")
	case o.writePct < 0 || o.writePct > 100:
		return errors.New("-write-pct must be between 0 and 100")
	case o.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case o.gen != "auto" && o.gen != "wrk" && o.gen != "go":
		return fmt.Errorf("-gen %q: want auto, wrk or go", o.gen)
	}
	return nil
}

// selectContenders applies the -contenders filter to contenders.All().
func selectContenders(filter string) ([]contenders.Contender, error) {
	all := contenders.All()
	if strings.TrimSpace(filter) == "" {
		return all, nil
	}
	var names []string
	for _, c := range all {
		names = append(names, c.Name)
	}
	var want []string
	for f := range strings.SplitSeq(filter, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		found := false
		for _, c := range all {
			if c.Name == f || strings.HasPrefix(c.Name, f+"/") {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("-contenders: no contender %q (have: %s)", f, strings.Join(names, ", "))
		}
		want = append(want, f)
	}
	var out []contenders.Contender
	for _, c := range all {
		if slices.ContainsFunc(want, func(f string) bool { return c.Name == f || strings.HasPrefix(c.Name, f+"/") }) {
			out = append(out, c)
		}
	}
	return out, nil
}

// runLoad is the whole parent side of a run.
func runLoad(ctx context.Context, o options) error {
	list, err := selectContenders(o.contenders)
	if err != nil {
		return err
	}

	gen, err := pickGenerator(o.gen)
	if err != nil {
		return err
	}

	var notes []string
	needMC := slices.ContainsFunc(list, func(c contenders.Contender) bool { return c.Memcached })
	var mcs []*memcached
	if needMC {
		if path, err := exec.LookPath("memcached"); err != nil {
			var skipped []string
			for _, c := range list {
				if c.Memcached {
					skipped = append(skipped, c.Name)
				}
			}
			msg := fmt.Sprintf("memcached is not installed: skipping %s", strings.Join(skipped, ", "))
			fmt.Fprintf(os.Stderr, "load: %s\n", msg)
			notes = append(notes, msg)
			list = slices.DeleteFunc(list, func(c contenders.Contender) bool { return c.Memcached })
			if len(list) == 0 {
				return errors.New("memcached is not installed and every selected contender needs it")
			}
		} else {
			for i := range 2 {
				m, err := startMemcached(ctx, path)
				if err != nil {
					return fmt.Errorf("memcached node %d: %w", i+1, err)
				}
				defer m.stop()
				mcs = append(mcs, m)
				fmt.Fprintf(os.Stderr, "load: memcached node %d on %s (pid %d)\n", i+1, m.addr, m.cmd.Process.Pid)
			}
		}
	}

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary to re-execute as the server: %w", err)
	}
	tmp, err := os.MkdirTemp("", "mcsession-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if b0, err := machineCPU(); err == nil {
		time.Sleep(500 * time.Millisecond)
		if b1, err := machineCPU(); err == nil {
			if busy := (b1 - b0).Seconds() / 0.5; busy > 0.2 {
				msg := fmt.Sprintf("the machine was not idle before the run (%.2f CPUs busy): results will be understated", busy)
				fmt.Fprintf(os.Stderr, "load: warning: %s\n", msg)
				notes = append(notes, msg)
			}
		}
	}

	started := time.Now()
	rounds := make([][]result, o.rounds)
	var failed []string
	for i := range rounds {
		for _, c := range list {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var nodes []*memcached
			if c.Memcached {
				nodes = mcs
			}
			fmt.Fprintf(os.Stderr, "load: --- %s (round %d of %d)\n", c.Name, i+1, o.rounds)
			r, err := runContender(ctx, o, c, exe, tmp, gen, nodes)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "load: %s: FAILED: %v\n", c.Name, err)
				failed = append(failed, fmt.Sprintf("%s (round %d): %v", c.Name, i+1, err))
				r = result{name: c.Name, err: err}
			}
			rounds[i] = append(rounds[i], r)
		}
	}
	results := combineRounds(rounds)

	report(os.Stdout, o, gen, results, notes, mcs, time.Since(started))
	if len(failed) > 0 {
		return fmt.Errorf("%d contender(s) failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	return nil
}

// result is one contender's line in the table.
type result struct {
	name    string
	gen     genResult
	mc      bool
	mcOps   uint64        // memcached commands during the window and its backups
	srvCPU  time.Duration // server CPU time during the window and its backups; <0 unknown
	mcCPU   time.Duration // memcached CPU time, same span
	settled bool          // memcached counters stopped changing after the window
	other   float64       // CPUs busy with anything else, averaged over the same span; <0 unknown
	err     error

	// ratios to each of floors: req/s over the floor's in the same round,
	// median and range over the rounds (zero if the floor was not run).
	ratios [len(floors)]ratio
	rounds int
}

// floors are the contenders every other one is compared with: bare;
// bare/header, the floor for handlers that set a response header; and
// floor/session, the least any session middleware can do.
var floors = [...]string{"bare", "bare/header", "floor/session"}

// ratio is a contender's req/s over a floor's: the median over the rounds
// and the range.
type ratio struct{ mid, lo, hi float64 }

// ratiosIn returns r's ratio to each floor in one round.
func ratiosIn(r result, round []result) [len(floors)]float64 {
	var out [len(floors)]float64
	for i, f := range floors {
		for _, b := range round {
			if b.name == f && b.err == nil && b.gen.rps() > 0 && r.err == nil {
				out[i] = r.gen.rps() / b.gen.rps()
			}
		}
	}
	return out
}

// combineRounds turns the results of every round (each in contender order)
// into one line per contender: the round with the median req/s, and the
// median and range of its ratio to each floor's req/s in the same round. A
// contender that failed in any round is shown failed.
func combineRounds(rounds [][]result) []result {
	var out []result
	for j := range rounds[0] {
		var ok []result
		var perFloor [len(floors)][]float64
		var failed *result
		for _, round := range rounds {
			r := round[j]
			if r.err != nil {
				failed = &r
				continue
			}
			ok = append(ok, r)
			for i, x := range ratiosIn(r, round) {
				if x > 0 {
					perFloor[i] = append(perFloor[i], x)
				}
			}
		}
		if failed != nil {
			out = append(out, *failed)
			continue
		}
		slices.SortFunc(ok, func(x, y result) int { return cmp.Compare(x.gen.rps(), y.gen.rps()) })
		r := ok[len(ok)/2]
		r.rounds = len(ok)
		for i, xs := range perFloor {
			if len(xs) > 0 {
				slices.Sort(xs)
				r.ratios[i] = ratio{median(xs), xs[0], xs[len(xs)-1]}
			}
		}
		out = append(out, r)
	}
	return out
}

// median of a sorted, non-empty slice.
func median(v []float64) float64 {
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// runContender measures one contender: fresh server process, sessions,
// warm-up, measured window.
func runContender(ctx context.Context, o options, c contenders.Contender, exe, tmp string, gen generator, nodes []*memcached) (result, error) {
	r := result{name: c.Name, mc: c.Memcached, srvCPU: -1, other: -1}
	for _, m := range nodes {
		select {
		case <-m.exited:
			return r, fmt.Errorf("memcached %s (pid %d) has exited", m.addr, m.cmd.Process.Pid)
		default:
		}
		if err := m.flush(); err != nil {
			return r, err
		}
	}
	srv, err := startServer(ctx, exe, c.Name, nodes)
	if err != nil {
		return r, err
	}
	defer srv.stop()

	t := time.Now()
	cookies, err := login(ctx, srv.addr, o.sessions, o.items, o.conns)
	if err != nil {
		return r, err
	}
	n := 0
	for _, ck := range cookies {
		if ck != "" {
			n++
		}
	}
	fmt.Fprintf(os.Stderr, "load: %s: %d sessions created in %v (%d with a cookie)\n", c.Name, len(cookies), time.Since(t).Round(time.Millisecond), n)
	if !c.NoSessions {
		if err := checkSessions(ctx, srv.addr, cookies, o.items); err != nil {
			return r, err
		}
	}
	// Backups of the new sessions land during the warm-up at the latest.

	lw := loadWork{addr: srv.addr, cookies: cookies, conns: o.conns, writePct: o.writePct, tmp: tmp}
	if o.warmup > 0 {
		if _, err := gen.run(ctx, lw, o.warmup, 1); err != nil {
			return r, fmt.Errorf("warm-up: %w", err)
		}
	}
	before, _, err := settle(ctx, nodes)
	if err != nil {
		return r, err
	}
	cpu0, cpuErr := processCPU(srv.cmd.Process.Pid)
	busy0, busyErr := machineCPU()
	spanStart := time.Now()

	g, err := gen.run(ctx, lw, o.duration, 2)
	if err != nil {
		return r, fmt.Errorf("measured run: %w", err)
	}
	r.gen = g

	after, ok, err := settle(ctx, nodes)
	if err != nil {
		return r, err
	}
	r.settled = ok
	if cpuErr == nil {
		if cpu1, err := processCPU(srv.cmd.Process.Pid); err == nil {
			r.srvCPU = cpu1 - cpu0
		}
	}
	if len(nodes) > 0 {
		r.mcOps = after.ops - before.ops
		r.mcCPU = after.cpu - before.cpu
	}
	if busy1, err := machineCPU(); err == nil && busyErr == nil && r.srvCPU >= 0 && g.cpu >= 0 {
		other := busy1 - busy0 - r.srvCPU - r.mcCPU - g.cpu
		r.other = max(0, other.Seconds()/time.Since(spanStart).Seconds())
	}
	if err := srv.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "load: %s: server exit: %v\n", c.Name, err)
	}
	fmt.Fprintf(os.Stderr, "load: %s: %.0f req/s, p50 %v, p99 %v, %d errors\n", c.Name, g.rps(), g.p50, g.p99, g.errors)
	return r, nil
}

// server is a child process serving one contender.
type server struct {
	cmd   *exec.Cmd
	addr  string
	stdin io.WriteCloser
	done  chan error
	err   error
}

// startServer re-executes this binary with -serve name and waits for the
// address it listens on.
func startServer(ctx context.Context, exe, name string, nodes []*memcached) (*server, error) {
	var addrs []string
	for _, m := range nodes {
		addrs = append(addrs, m.addr)
	}
	cmd := exec.Command(exe, "-serve", name, "-nodes", strings.Join(addrs, ","))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childproc.Attr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting server process: %w", err)
	}
	s := &server{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				line <- sc.Text()
				first = false
				continue
			}
			fmt.Fprintf(os.Stderr, "server %s: %s\n", name, sc.Text())
		}
		if first {
			close(line)
		}
		s.done <- cmd.Wait()
	}()
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "LISTEN ")
		if !ok || !found {
			s.stop()
			return nil, fmt.Errorf("server process for %s did not start (see its errors above)", name)
		}
		s.addr = addr
		return s, nil
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("server process for %s did not report its address within 10s", name)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop ends the server: closing its stdin asks it to shut down; it is
// killed if it has not exited 5 seconds later. stop may be called again.
func (s *server) stop() error {
	if s.done == nil {
		return s.err
	}
	s.stdin.Close()
	select {
	case s.err = <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		s.err = fmt.Errorf("server did not stop within 5s, killed: %v", <-s.done)
	}
	s.done = nil
	return s.err
}

// settle waits until the memcached counters stop changing (asynchronous
// backups have landed), at most 5 seconds, and returns the last reading.
func settle(ctx context.Context, nodes []*memcached) (mcStats, bool, error) {
	if len(nodes) == 0 {
		return mcStats{}, true, nil
	}
	const (
		poll  = 100 * time.Millisecond
		quiet = 500 * time.Millisecond
		bound = 5 * time.Second
	)
	last, err := readStats(nodes)
	if err != nil {
		return last, false, err
	}
	start, since := time.Now(), time.Now()
	for time.Since(start) < bound {
		select {
		case <-ctx.Done():
			return last, false, ctx.Err()
		case <-time.After(poll):
		}
		s, err := readStats(nodes)
		if err != nil {
			return last, false, err
		}
		if s.ops != last.ops {
			since = time.Now()
		} else if time.Since(since) >= quiet {
			return s, true, nil
		}
		last = s
	}
	return last, false, nil
}

// readStats sums the counters of every node.
func readStats(nodes []*memcached) (mcStats, error) {
	var sum mcStats
	for _, m := range nodes {
		s, err := m.stats()
		if err != nil {
			return sum, err
		}
		sum.ops += s.ops
		sum.cpu += s.cpu
	}
	return sum, nil
}

// quoteArgs renders arguments for a shell.
func quoteArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
			b.WriteString(strconv.Quote(a))
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// command reconstructs the command line of this run.
func command() string {
	args := quoteArgs(os.Args[1:])
	if args != "" {
		args = " " + args
	}
	exe, _ := os.Executable()
	if strings.Contains(exe, "go-build") {
		pkg := "."
		if wd, err := os.Getwd(); err == nil {
			switch {
			case fileExists(wd + "/bench/load/main.go"):
				pkg = "./bench/load"
			case fileExists(wd + "/load/main.go"):
				pkg = "./load"
			}
		}
		return "go run " + pkg + args
	}
	return quoteArgs(os.Args[:1]) + args
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func goVersion() string {
	return runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
