package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sync"
	"text/tabwriter"
	"time"
)

// step is one phase of the scenario: traffic, with an event a third of the
// way in.
type step struct {
	name  string
	event func(c *cluster) error
}

var steps = []step{
	{name: "normal traffic"},
	{name: "instance app2 crashes (SIGKILL)", event: func(c *cluster) error {
		return c.crashInstance("app2")
	}},
	{name: "memcached n1 crashes", event: func(c *cluster) error {
		c.nodes[0].crash()
		return nil
	}},
	{name: "app1 drained (SIGTERM) and restarted", event: func(c *cluster) error {
		return c.restartInstance("app1")
	}},
	{name: "traffic continues"},
}

// scenario runs the steps with every shopper shopping, checks every cart
// after each step, and prints the table. With SyncBackup it fails if any
// cart lost anything.
func (c *cluster) scenario(ctx context.Context) error {
	shoppers := make([]*shopper, c.opts.shoppers)
	for i := range shoppers {
		shoppers[i] = newShopper(i+1, c.lbURL)
	}
	per := c.opts.duration / time.Duration(len(steps))
	fmt.Printf("\n%d shoppers, %v of traffic per step\n\n", len(shoppers), per.Round(time.Millisecond))

	header := "step\tshoppers\titems added\tcarts intact\tcarts damaged\titems lost\ttakeovers\trelocations\tbackups written\tp50\tp99\t"
	var rows []string
	added, lostTotal, damagedTotal := 0, 0, 0
	for i, st := range steps {
		if ctx.Err() != nil {
			return errStopped
		}
		fmt.Printf("step %d: %s\n", i+1, st.name)
		t := &traffic{}
		if err := c.runStep(ctx, st, per, shoppers, t); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return errStopped
		}
		v := check(shoppers)
		added += int(t.adds.Load())
		lostTotal += v.lost
		damagedTotal += v.damaged
		s := c.collectStats()
		rows = append(rows, fmt.Sprintf("%d %s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t",
			i+1, st.name, len(shoppers), added, v.intact, v.damaged, v.lost,
			s.Takeovers, s.Relocations, s.BackupsWritten,
			t.percentile(50).Round(10*time.Microsecond), t.percentile(99).Round(10*time.Microsecond)))
		fmt.Printf("        %d additions (%d failed requests); every cart checked:\n", t.adds.Load(), t.errors.Load())
		if v.unreadable > 0 {
			fmt.Printf("        %d carts could not be read at all (counted as damaged)\n", v.unreadable)
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
		return nil
	}
	if damagedTotal > 0 {
		return fmt.Errorf("SyncBackup: %d carts lost %d items: %w", damagedTotal, lostTotal, errDamaged)
	}
	fmt.Printf("SyncBackup: all %d carts intact through every crash; %d items added, none lost.\n", len(shoppers), added)
	return nil
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
				}
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
	c.snapshot(in)
	in.proc.kill()
	c.mu.Lock()
	delete(c.instances, route)
	c.mu.Unlock()
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

// instanceStats is the part of mcsession.Stats the table shows.
type instanceStats struct {
	Takeovers, Relocations, BackupsWritten uint64
}

// snapshot records an instance's statistics, read from its /stats.
func (c *cluster) snapshot(in *instance) {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + in.addr + "/stats")
	if err != nil {
		return // it died: its last snapshot stands
	}
	defer resp.Body.Close()
	var s instanceStats
	if json.NewDecoder(resp.Body).Decode(&s) == nil {
		c.mu.Lock()
		c.stats[in.proc] = s
		c.mu.Unlock()
	}
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
