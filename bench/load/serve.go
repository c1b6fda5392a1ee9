package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/mcsession/mcsession"
	"github.com/mcsession/mcsession/bench/contenders"
)

// serve is the child process: it serves one contender on 127.0.0.1:0,
// prints "LISTEN addr" on stdout, and shuts down when its stdin closes (the
// parent stopped it, or died) or on SIGINT/SIGTERM.
func serve(name, nodeList string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "load -serve %s: %s\n", name, fmt.Sprintf(format, args...))
		return 1
	}
	var c *contenders.Contender
	for _, x := range contenders.All() {
		if x.Name == name {
			c = &x
			break
		}
	}
	if c == nil {
		return fail("no such contender")
	}
	var nodes []string
	if nodeList != "" {
		nodes = strings.Split(nodeList, ",")
	}
	if c.Memcached && len(nodes) == 0 {
		return fail("contender needs memcached nodes (-nodes)")
	}
	if !c.Memcached {
		nodes = nil
	}

	if dir := os.Getenv("MCLOAD_CPUPROFILE"); dir != "" {
		stopProfile, err := startCPUProfile(dir, name)
		if err != nil {
			return fail("%v", err)
		}
		defer stopProfile()
	}
	h, closeApp, err := c.New(nodes)
	if err != nil {
		return fail("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		closeApp()
		return fail("listen: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	fmt.Printf("LISTEN %s\n", ln.Addr())

	code := 0
	select {
	case <-ctx.Done():
	case err := <-served:
		code = fail("serve: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		srv.Close()
	}
	closeApp()
	if os.Getenv("MCLOAD_STATS") != "" {
		printStats(name, h)
	}
	return code
}

// printStats writes the server's context switches and, for mcsession, its
// Stats to stderr: what a profile does not show about wake-ups and batches.
func printStats(name string, h http.Handler) {
	if vol, invol, err := contextSwitches(); err != nil {
		fmt.Fprintf(os.Stderr, "load -serve %s: context switches: %v\n", name, err)
	} else {
		fmt.Fprintf(os.Stderr, "load -serve %s: context switches: %d voluntary, %d involuntary\n", name, vol, invol)
	}
	if s, ok := h.(interface{ Stats() mcsession.Stats }); ok {
		fmt.Fprintf(os.Stderr, "load -serve %s: %+v\n", name, s.Stats())
	}
}

// startCPUProfile profiles the server process into dir/<name>.pprof (the
// slash in a contender's name becomes a dash) until the returned function is
// called, which also writes the allocation profile, dir/<name>.allocs.pprof. It is for finding where a contender's time goes:
//
//	MCLOAD_CPUPROFILE=/tmp/prof go run ./bench/load -contenders mcsession/async
//	go tool pprof -top /tmp/prof/mcsession-async.pprof
func startCPUProfile(dir, name string) (stop func(), err error) {
	f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+".pprof"))
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		// The allocation profile of the same run, for go tool pprof -sample_index=alloc_space.
		if h, err := os.Create(filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+".allocs.pprof")); err == nil {
			pprof.Lookup("allocs").WriteTo(h, 0)
			h.Close()
		}
	}, nil
}
