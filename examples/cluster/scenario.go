package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
)

// step is one phase of the scenario: traffic, with an event a third of the
// way in.
type step struct {
	name  string
	event func(c *cluster) error
	// outcome, when set, says in a line what the check after the step
	// found, for a step whose point the table alone does not make.
	outcome func(r stepResult) string
}

// The double fault: an instance and a memcached node die at the same
// moment. Every session is stored on two memcached nodes (Config.Copies,
// default 2), so the instance's sessions survive on the other node.
const (
	doubleFaultInstance = "app3"
	doubleFaultNode     = "n2"
	doubleFaultStep     = "instance " + doubleFaultInstance + " and memcached " + doubleFaultNode + " crash at once"
)

// indent starts the lines that follow an event's ">>>" line.
const indent = "                    "

// scenarioSteps returns the scenario's steps, in order. The double fault
// comes late: after n1's crash, so every cart has its two copies on n2 and
// n3 and, n2 dead, depends on the one on n3; and after app1's restart,
// whose drain sent app1's carts to app3 (app2 is dead), so app3 holds every
// cart when it dies.
func scenarioSteps() []step {
	return []step{
		{name: "normal traffic"},
		{name: "instance app2 crashes (SIGKILL)", event: func(c *cluster) error {
			return c.crashInstance("app2")
		}},
		{name: "memcached n1 crashes", event: func(c *cluster) error {
			return c.crashNode("n1")
		}},
		{name: "app1 drained (SIGTERM) and restarted", event: func(c *cluster) error {
			return c.restartInstance("app1")
		}},
		{name: doubleFaultStep, event: func(c *cluster) error {
			return c.crashTogether(doubleFaultInstance, doubleFaultNode)
		}, outcome: doubleFaultOutcome},
		{name: "traffic continues"},
	}
}

// doubleFaultOutcome says whether the carts came through the double fault,
// and how.
func doubleFaultOutcome(r stepResult) string {
	if r.damaged > 0 {
		return fmt.Sprintf("after the double fault: %d of %d carts damaged, %d %s lost", r.damaged, r.shoppers, r.lost, plural(r.lost, "item"))
	}
	return fmt.Sprintf("after the double fault: all %d carts intact, no item lost; %s took over %d carts from their copies on memcached %s",
		r.shoppers, orNone(r.instances), r.delta.Takeovers, orNone(r.nodes))
}

// stepResult is what the check after a step found.
type stepResult struct {
	name     string
	shoppers int
	verdict
	instances, nodes []string      // the routes and node ids running at the end of the step
	delta            instanceStats // the statistics this step added
}

// scenario runs the steps with every shopper shopping, checks every cart
// after each step, and prints the table. It returns what each check found.
// With SyncBackup it fails if any cart lost anything.
func (c *cluster) scenario(ctx context.Context) ([]stepResult, error) {
	shoppers := make([]*shopper, c.opts.shoppers)
	for i := range shoppers {
		shoppers[i] = newShopper(i+1, c.lbURL)
	}
	steps := scenarioSteps()
	per := c.opts.duration / time.Duration(len(steps))
	fmt.Printf("\n%d shoppers, %v of traffic per step\n\n", len(shoppers), per.Round(time.Millisecond))

	header := "step\tshoppers\titems added\tcarts intact\tcarts damaged\titems lost\ttakeovers\trelocations\tbackups written\tp50\tp99\t"
	var rows []string
	var results []stepResult
	var total instanceStats
	added, lostTotal, damagedTotal := 0, 0, 0
	for i, st := range steps {
		if ctx.Err() != nil {
			return results, errStopped
		}
		fmt.Printf("step %d: %s\n", i+1, st.name)
		t := &traffic{}
		if err := c.runStep(ctx, st, per, shoppers, t); err != nil {
			return results, err
		}
		if ctx.Err() != nil {
			return results, errStopped
		}
		v := check(shoppers)
		added += int(t.adds.Load())
		lostTotal += v.lost
		damagedTotal += v.damaged
		s := c.collectStats()
		r := stepResult{name: st.name, shoppers: len(shoppers), verdict: v, delta: s.minus(total)}
		r.instances, r.nodes = c.running()
		results = append(results, r)
		total = s
		rows = append(rows, fmt.Sprintf("%d %s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t",
			i+1, st.name, len(shoppers), added, v.intact, v.damaged, v.lost,
			s.Takeovers, s.Relocations, s.BackupsWritten,
			t.percentile(50).Round(10*time.Microsecond), t.percentile(99).Round(10*time.Microsecond)))
		fmt.Printf("        %d additions (%d failed requests); every cart checked:\n", t.adds.Load(), t.errors.Load())
		if v.unreadable > 0 {
			fmt.Printf("        %d carts could not be read at all (counted as damaged)\n", v.unreadable)
		}
		if st.outcome != nil {
			fmt.Printf("        %s\n", st.outcome(r))
		}
		// The table so far, after every step.
		fmt.Println()
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, header)
		for _, r := range rows {
			fmt.Fprintln(tw, r)
		}
		tw.Flush()
		fmt.Println()
	}
	if c.opts.async {
		fmt.Printf("async backup: %d of %d confirmed additions were lost to crashes (%.3f%%): the window between a\n"+
			"response and its backup reaching memcached. Run without -async (SyncBackup) to close it.\n",
			lostTotal, added, 100*float64(lostTotal)/float64(max(added, 1)))
		return results, nil
	}
	if damagedTotal > 0 {
		return results, fmt.Errorf("SyncBackup: %d carts lost %d items: %w", damagedTotal, lostTotal, errDamaged)
	}
	fmt.Printf("SyncBackup: all %d carts intact through every crash, the double fault (%s and memcached %s at once) included;\n"+
		"%d items added, none lost.\n", len(shoppers), doubleFaultInstance, doubleFaultNode, added)
	return results, nil
}

// runStep runs the shoppers for d, firing the step's event a third of the
// way in, with a progress line every second.
func (c *cluster) runStep(ctx context.Context, st step, d time.Duration, shoppers []*shopper, t *traffic) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.shop(ctx, c.opts.think, t)
		}()
	}
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	event := time.NewTimer(d / 3)
	defer event.Stop()
	start := time.Now()
	var eventErr error
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-event.C:
			if st.event != nil {
				fmt.Printf("        %5.1fs  >>> %s\n", time.Since(start).Seconds(), st.name)
				if eventErr = st.event(c); eventErr != nil {
					cancel()
					break
				}
				fmt.Printf("%sup now: %s\n", indent, describeUp(c.running()))
			}
		case <-progress.C:
			fmt.Printf("        %5.1fs  %6d additions, %4d failed requests\n", time.Since(start).Seconds(), t.adds.Load(), t.errors.Load())
		}
	}
	wg.Wait()
	return eventErr
}

// crashInstance SIGKILLs an instance, keeping its last statistics.
func (c *cluster) crashInstance(route string) error {
	in := c.instance(route)
	if in == nil {
		return fmt.Errorf("crash instance %s: it is not running (check the order of the scenario's steps)", route)
	}
	c.snapshot(in)
	c.kill(in)
	return nil
}

// kill SIGKILLs an instance and forgets it; its statistics stay as last
// seen.
func (c *cluster) kill(in *instance) {
	in.proc.kill()
	c.mu.Lock()
	delete(c.instances, in.route)
	c.mu.Unlock()
}

// crashNode stops memcached node id at once.
func (c *cluster) crashNode(id string) error {
	n := c.node(id)
	if n == nil || n.down.Load() {
		return fmt.Errorf("crash memcached %s: it is not running (check the order of the scenario's steps)", id)
	}
	n.crash()
	return nil
}

// crashTogether SIGKILLs instance route and stops memcached node id at the
// same moment: the double fault that two copies of every session are for.
// It first prints how many carts the instance holds and where their copies
// are.
func (c *cluster) crashTogether(route, id string) error {
	in, n := c.instance(route), c.node(id)
	if in == nil || n == nil || n.down.Load() {
		return fmt.Errorf("crash instance %s and memcached %s: one is not running (check the order of the scenario's steps)", route, id)
	}
	held := "its"
	if s, ok := c.snapshot(in); ok {
		held = strconv.Itoa(s.LocalSessions)
	}
	_, nodes := c.running()
	fmt.Printf("%s%s holds %s carts in memory; memcached keeps two copies of each, on the nodes up: %s\n",
		indent, route, held, orNone(nodes))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n.crash()
	}()
	c.kill(in)
	wg.Wait()
	return nil
}

// restartInstance drains an instance with SIGTERM, as a rolling deploy
// does, checks it exited cleanly, and starts a new process in its place.
func (c *cluster) restartInstance(route string) error {
	in := c.instance(route)
	c.snapshot(in)
	if err := in.proc.stop(20 * time.Second); err != nil {
		return fmt.Errorf("draining %s: %w (log: %s)", route, err, in.proc.logPath)
	}
	c.snapshot(in) // nothing more can change; keep what it ended with
	if err := c.startInstance(route, in.addr); err != nil {
		return err
	}
	return nil
}

// instanceStats is the part of mcsession.Stats the scenario shows.
type instanceStats struct {
	Takeovers, Relocations, BackupsWritten uint64
	LocalSessions                          int // a gauge of one process: not summed
}

// minus returns the counters added since before.
func (s instanceStats) minus(before instanceStats) instanceStats {
	return instanceStats{
		Takeovers:      s.Takeovers - before.Takeovers,
		Relocations:    s.Relocations - before.Relocations,
		BackupsWritten: s.BackupsWritten - before.BackupsWritten,
	}
}

// snapshot records an instance's statistics, read from its /stats, and
// returns them; ok is false if the instance did not answer.
func (c *cluster) snapshot(in *instance) (s instanceStats, ok bool) {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + in.addr + "/stats")
	if err != nil {
		return s, false // it died: its last snapshot stands
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, false
	}
	c.mu.Lock()
	c.stats[in.proc] = s
	c.mu.Unlock()
	return s, true
}

// collectStats snapshots the live instances and sums the statistics of
// every process the cluster ran, dead ones included (as last seen).
func (c *cluster) collectStats() instanceStats {
	c.mu.Lock()
	var live []*instance
	for _, in := range c.instances {
		live = append(live, in)
	}
	c.mu.Unlock()
	for _, in := range live {
		c.snapshot(in)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum instanceStats
	for _, s := range c.stats {
		sum.Takeovers += s.Takeovers
		sum.Relocations += s.Relocations
		sum.BackupsWritten += s.BackupsWritten
	}
	return sum
}
