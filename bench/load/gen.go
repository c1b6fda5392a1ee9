package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcsession/mcsession/internal/childproc"
)

// loadWork is what a generator sends: requests to addr, each for a random
// session out of cookies, writePct% of them POST /write.
type loadWork struct {
	addr     string
	cookies  []string
	conns    int
	writePct int
	tmp      string // a directory for the generator's files
}

// genResult is what a generator measured.
type genResult struct {
	requests int64         // responses received in the window
	errors   int64         // non-2xx responses and transport errors
	dur      time.Duration // length of the window
	p50, p99 time.Duration
	max      time.Duration
	cpu      time.Duration // the generator's own CPU time; <0 unknown
}

func (g genResult) rps() float64 {
	if g.dur <= 0 {
		return 0
	}
	return float64(g.requests) / g.dur.Seconds()
}

// generator produces the load. run sends it for d; seed picks the random
// sequence, the same for every contender.
type generator interface {
	name() string
	run(ctx context.Context, w loadWork, d time.Duration, seed int) (genResult, error)
}

// pickGenerator resolves -gen.
func pickGenerator(mode string) (generator, error) {
	if mode == "go" {
		return goGen{}, nil
	}
	path, err := exec.LookPath("wrk")
	if err != nil {
		if mode == "wrk" {
			return nil, fmt.Errorf("-gen wrk: %w", err)
		}
		fmt.Fprintln(os.Stderr, "load: wrk is not installed; the load comes from the Go generator in this process")
		return goGen{}, nil
	}
	return &wrkGen{path: path}, nil
}

//go:embed wrk.lua
var wrkScript []byte

// wrkGen runs wrk with one thread and wrk.lua.
type wrkGen struct {
	path    string
	version string
}

func (g *wrkGen) name() string {
	if g.version == "" {
		out, _ := exec.Command(g.path, "-v").CombinedOutput()
		g.version = "wrk"
		if l, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(l, "wrk ") {
			if f := strings.Fields(l); len(f) >= 2 {
				g.version = "wrk " + f[1]
			}
		}
	}
	return g.version + " (1 thread, Lua script)"
}

var wrkLine = regexp.MustCompile(`(?m)^MCLOAD (.*)$`)

func (g *wrkGen) run(ctx context.Context, w loadWork, d time.Duration, seed int) (genResult, error) {
	script := filepath.Join(w.tmp, "wrk.lua")
	if err := os.WriteFile(script, wrkScript, 0o644); err != nil {
		return genResult{}, err
	}
	cookies := filepath.Join(w.tmp, "cookies.txt")
	if err := os.WriteFile(cookies, []byte(strings.Join(w.cookies, "\n")+"\n"), 0o644); err != nil {
		return genResult{}, err
	}
	// wrk takes whole seconds.
	secs := int((d + time.Second - 1) / time.Second)
	cmd := exec.CommandContext(ctx, g.path,
		"-t", "1", "-c", strconv.Itoa(w.conns), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "2s", "-s", script, "http://"+w.addr+"/")
	cmd.Env = append(os.Environ(),
		"MCLOAD_COOKIES="+cookies,
		"MCLOAD_WRITE_PCT="+strconv.Itoa(w.writePct),
		"MCLOAD_SEED="+strconv.Itoa(seed))
	cmd.SysProcAttr = childproc.Attr()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return genResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := wrkLine.FindSubmatch(out)
	if m == nil {
		return genResult{}, fmt.Errorf("wrk printed no MCLOAD line:\n%s", out)
	}
	v := map[string]int64{}
	for kv := range strings.FieldsSeq(string(m[1])) {
		k, s, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return genResult{}, fmt.Errorf("wrk: bad %q in %q", kv, m[1])
		}
		v[k] = n
	}
	us := func(k string) time.Duration { return time.Duration(v[k]) * time.Microsecond }
	r := genResult{
		cpu:      cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		requests: v["requests"],
		errors:   v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"],
		dur:      us("duration_us"),
		p50:      us("p50_us"),
		p99:      us("p99_us"),
		max:      us("max_us"),
	}
	if r.requests == 0 {
		return r, fmt.Errorf("wrk completed no request:\n%s", out)
	}
	return r, nil
}

// goGen is the fallback generator: w.conns goroutines in this process,
// each on its own keep-alive connection, recording every latency.
type goGen struct{}

func (goGen) name() string { return "Go net/http client in the parent process" }

func (goGen) run(ctx context.Context, w loadWork, d time.Duration, seed int) (genResult, error) {
	tr := newTransport(w.conns)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	readURL, writeURL := "http://"+w.addr+"/read", "http://"+w.addr+"/write"

	cpu0, cpuErr := processCPU(os.Getpid())
	start := time.Now()
	end := start.Add(d)
	lats := make([][]time.Duration, w.conns)
	errs := make([]int64, w.conns)
	var wg sync.WaitGroup
	for i := range w.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
			lat := make([]time.Duration, 0, 1<<16)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				method, url := http.MethodGet, readURL
				if rnd.IntN(100) < w.writePct {
					method, url = http.MethodPost, writeURL
				}
				req, err := http.NewRequestWithContext(ctx, method, url, http.NoBody)
				if err != nil {
					errs[i]++
					continue
				}
				if c := w.cookies[rnd.IntN(len(w.cookies))]; c != "" {
					req.Header.Set("Cookie", c)
				}
				resp, err := client.Do(req)
				ok := err == nil
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = err == nil && resp.StatusCode/100 == 2
				}
				t1 := time.Now()
				if t1.After(end) {
					break // finished outside the window
				}
				if !ok {
					errs[i]++
					continue
				}
				lat = append(lat, t1.Sub(t0))
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return genResult{}, err
	}
	r := genResult{dur: d, cpu: -1}
	if cpu1, err := processCPU(os.Getpid()); err == nil && cpuErr == nil {
		r.cpu = cpu1 - cpu0
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	r.requests = int64(len(all))
	for _, e := range errs {
		r.errors += e
	}
	r.requests += r.errors
	if len(all) == 0 {
		return r, errors.New("no request succeeded")
	}
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p/100*float64(len(all))))] }
	r.p50, r.p99, r.max = pct(50), pct(99), all[len(all)-1]
	return r, nil
}

func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
	}
}

// login creates n sessions with POST /login?items=items over conns
// connections and returns each one's Cookie header value ("" when the
// response set no cookie, as for bare).
func login(ctx context.Context, addr string, n, items, conns int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tr := newTransport(conns)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + addr + "/login?items=" + strconv.Itoa(items)

	cookies := make([]string, n)
	var (
		mu       sync.Mutex
		firstErr error
		next     int
		wg       sync.WaitGroup
	)
	for range min(conns, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := firstErr != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				c, err := loginOne(ctx, client, url)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("POST /login (session %d): %w", i, err)
					}
					mu.Unlock()
					return
				}
				cookies[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	// Either every login set a cookie or none did (bare).
	with := 0
	for _, c := range cookies {
		if c != "" {
			with++
		}
	}
	if with != 0 && with != n {
		return nil, fmt.Errorf("POST /login set a cookie for only %d of %d sessions", with, n)
	}
	return cookies, nil
}

func loginOne(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, http.NoBody)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	var parts []string
	for _, c := range resp.Cookies() {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; "), nil
}

// checkSessions makes sure, before the clock starts, that the cookies work:
// GET /read answers the cart size for a few sessions, and POST /write
// answers 2xx. With wrk only 4xx and 5xx responses count as errors, so this
// is also where a redirecting contender would show.
func checkSessions(ctx context.Context, addr string, cookies []string, items int) error {
	client := &http.Client{Transport: newTransport(1), Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	do := func(method, path, cookie string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, http.NoBody)
		if err != nil {
			return "", err
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode/100 != 2 {
			return "", fmt.Errorf("%s %s: status %s", method, path, resp.Status)
		}
		return strings.TrimSpace(string(b)), nil
	}
	for _, i := range []int{0, len(cookies) / 2, len(cookies) - 1} {
		c := cookies[i]
		body, err := do(http.MethodGet, "/read", c)
		if err != nil {
			return fmt.Errorf("checking session %d: %w", i, err)
		}
		if c != "" && body != strconv.Itoa(items) {
			return fmt.Errorf("checking session %d: GET /read answered %q, want the cart size %d (is the cookie recognised?)", i, body, items)
		}
		if _, err := do(http.MethodPost, "/write", c); err != nil {
			return fmt.Errorf("checking session %d: %w", i, err)
		}
		if body, err := do(http.MethodGet, "/read", c); err != nil || (c != "" && body != strconv.Itoa(items)) {
			return fmt.Errorf("checking session %d after a write: GET /read answered %q, %v", i, body, err)
		}
	}
	return nil
}
