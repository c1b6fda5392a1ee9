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
	"strings"
	"syscall"
	"time"

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
	return code
}
