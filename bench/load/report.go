package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// report prints the markdown report of a run.
func report(w io.Writer, o options, gen generator, results []result, notes []string, mcs []*memcached, took time.Duration) {
	fmt.Fprintf(w, "\n## HTTP load, workload (c): %d%% GET /read, %d%% POST /write, %d sessions of %d items\n\n",
		100-o.writePct, o.writePct, o.sessions, o.items)
	fmt.Fprintf(w, "- command: `%s`\n", command())
	fmt.Fprintf(w, "- date: %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(w, "- machine: %d CPUs (nproc), %s, %s\n", runtime.NumCPU(), cpuModel(), kernel())
	fmt.Fprintf(w, "- Go: %s\n", goVersion())
	fmt.Fprintf(w, "- generator: %s, %d connections, %v warm-up then %v measured per contender\n", gen.name(), o.conns, o.warmup, o.duration)
	if o.rounds > 1 {
		fmt.Fprintf(w, "- rounds: %d, the contenders interleaved; each line is the contender's median round, each \"vs\" column the median of its ratio to that floor's req/s in the same round, with the range\n", o.rounds)
	}
	fmt.Fprintf(w, "- server: a fresh child process per contender (GOMAXPROCS=%s), http.Server on 127.0.0.1\n", gomaxprocs())
	if len(mcs) > 0 {
		fmt.Fprintf(w, "- memcached: %s, 2 nodes (-t 1 -m 256) on loopback, flushed before each contender\n", mcs[0].version())
	}
	for _, n := range notes {
		fmt.Fprintf(w, "- note: %s\n", n)
	}
	fmt.Fprintf(w, "- whole run: %v\n\n", took.Round(time.Second))

	fmt.Fprint(w, "| contender | req/s |")
	for _, f := range floors {
		fmt.Fprintf(w, " vs %s |", f)
	}
	fmt.Fprintln(w, " p50 | p99 | errors | mc ops/req | server CPU/req | memcached CPU/req | generator CPU/req | other CPU |")
	fmt.Fprintln(w, "|---|--:|"+strings.Repeat("--:|", len(floors))+"--:|--:|--:|--:|--:|--:|--:|--:|")
	unsettled, busy := false, false
	for _, r := range results {
		if r.err != nil {
			const after = 8 // columns after the floors: p50 to other CPU
			fmt.Fprintf(w, "| %s | failed: %s |%s\n", r.name, strings.ReplaceAll(firstLine(r.err.Error()), "|", "/"), strings.Repeat(" |", len(floors)+after))
			continue
		}
		g := r.gen
		var ratios [len(floors)]string
		for i, x := range r.ratios {
			switch {
			case x.mid == 0:
				ratios[i] = "—"
			case r.rounds > 1:
				ratios[i] = fmt.Sprintf("%.0f%% (%.0f–%.0f%%)", 100*x.mid, 100*x.lo, 100*x.hi)
			default:
				ratios[i] = fmt.Sprintf("%.0f%%", 100*x.mid)
			}
		}
		mcOps, mcCPU := "—", "—"
		if r.mc {
			mcOps = fmt.Sprintf("%.3f", float64(r.mcOps)/float64(g.requests))
			mcCPU = perReq(r.mcCPU, g.requests)
			if !r.settled {
				mcOps += " *"
				unsettled = true
			}
		}
		srvCPU := "—"
		if r.srvCPU >= 0 {
			srvCPU = perReq(r.srvCPU, g.requests)
		}
		genCPU := "—"
		if g.cpu >= 0 {
			genCPU = perReq(g.cpu, g.requests)
		}
		other := "—"
		if r.other >= 0 {
			other = fmt.Sprintf("%.2f CPUs", r.other)
			if r.other > 0.15 {
				other += " !"
				busy = true
			}
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d | %s | %s | %s | %s | %s |\n",
			r.name, g.rps(), strings.Join(ratios[:], " | "), ms(g.p50), ms(g.p99), g.errors, mcOps, srvCPU, mcCPU, genCPU, other)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "req/s counts responses in the measured window; p50/p99 are from the generator (closed loop, so queueing")
	fmt.Fprintln(w, "shows as latency, not as missed requests); errors are non-2xx responses and transport errors")
	fmt.Fprintln(w, "(with wrk, status >= 400 plus connect/read/write/timeout errors). mc ops/req is (cmd_get + cmd_set +")
	fmt.Fprintln(w, "cmd_touch + delete_hits + delete_misses) over both nodes, from after the warm-up until the counters")
	fmt.Fprintln(w, "settled after the window, divided by the window's requests; CPU/req is CPU time over the same span")
	fmt.Fprintln(w, "(server from /proc/PID/stat at 10 ms resolution, memcached from its rusage stats); generator CPU/req")
	fmt.Fprintln(w, "is the generator's CPU time in the window, the share of the machine the server could not have.")
	fmt.Fprintln(w, "other CPU is the machine's busy time (with hypervisor steal) left after the server, the generator and")
	fmt.Fprintln(w, "memcached, in CPUs averaged over the span: this process's polling, and anything else on the machine.")
	fmt.Fprintln(w, "Server, generator and memcached share the machine's cores: compare rows, not absolute capacity.")
	fmt.Fprintln(w, "bare/header is bare with every route setting Content-Type: net/http writes a response whose handler")
	fmt.Fprintln(w, "set no header on a faster path, and every session library sets one (Vary or Set-Cookie), so \"vs")
	fmt.Fprintln(w, "bare/header\" compares the same header work. floor/session is the least any session middleware can")
	fmt.Fprintln(w, "do (a map lookup by cookie, the session in the request's context, Vary: Cookie; no expiry, no")
	fmt.Fprintln(w, "backup, no checks): \"vs floor/session\" is what a library's own features cost.")
	if busy {
		fmt.Fprintln(w, "! something else used the CPUs during that row's window: its numbers are understated; run again on an idle machine.")
	}
	if unsettled {
		fmt.Fprintln(w, "* memcached counters were still changing 5 s after the window; the figure may be low.")
	}
}

func perReq(d time.Duration, n int64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(n)/1e3)
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/1e6)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "CPU model unknown"
	}
	for l := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "CPU model unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return runtime.GOOS + " " + strings.TrimSpace(string(b))
}

func gomaxprocs() string {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		return v + " from the environment"
	}
	return fmt.Sprintf("default, %d", runtime.NumCPU())
}
