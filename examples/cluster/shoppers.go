package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// shopper is one simulated customer with its own cookie jar. It remembers
// every item the shop confirmed, so its cart can be checked afterwards.
type shopper struct {
	id     int
	lb     string // the balancer's base URL
	client *http.Client
	tried  int      // items tried so far; names are unique per shopper
	acked  []string // items the shop holds, as far as this shopper knows
}

// cartView is the shop's JSON answer.
type cartView struct {
	Session string   `json:"session"`
	Route   string   `json:"route"`
	Items   []string `json:"items"`
}

func newShopper(id int, lb string) *shopper {
	jar, _ := cookiejar.New(nil)
	return &shopper{id: id, lb: lb, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// traffic collects what the shoppers of one step did.
type traffic struct {
	adds, errors atomic.Int64

	// mu guards latencies.
	mu        sync.Mutex
	latencies []time.Duration
}

func (t *traffic) observe(d time.Duration) {
	t.mu.Lock()
	t.latencies = append(t.latencies, d)
	t.mu.Unlock()
}

// percentile returns the p-th percentile (0..100) of the latencies seen.
func (t *traffic) percentile(p float64) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.latencies) == 0 {
		return 0
	}
	s := slices.Clone(t.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

// shop makes the shopper add items, pausing about think between them,
// until ctx is done.
func (s *shopper) shop(ctx context.Context, think time.Duration, t *traffic) {
	for ctx.Err() == nil {
		s.add(t)
		pause := think/2 + rand.N(think+1)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// add adds one item. If the shop does not answer 200, whether the item
// landed is unknown (the instance may have died after storing it), so the
// shopper looks at its cart, as a person would, and believes what it sees.
func (s *shopper) add(t *traffic) {
	s.tried++
	item := fmt.Sprintf("s%d-%d", s.id, s.tried)
	start := time.Now()
	resp, err := s.client.Post(s.lb+"/cart/add?item="+item, "", nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.observe(time.Since(start))
			t.adds.Add(1)
			s.acked = append(s.acked, item)
			return
		}
	}
	t.errors.Add(1)
	cart, err := s.cart()
	if err == nil && slices.Contains(cart.Items, item) {
		s.acked = append(s.acked, item)
		t.adds.Add(1)
	}
}

// cart reads the shopper's cart, retrying for a few seconds while the
// cluster is in the middle of a failover.
func (s *shopper) cart() (cartView, error) {
	var last error
	for range 100 {
		resp, err := s.client.Get(s.lb + "/cart")
		if err == nil {
			var v cartView
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return v, nil
			}
			if err == nil {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return cartView{}, fmt.Errorf("shopper %d: cannot read cart: %w", s.id, last)
}

// verdict is the result of checking every cart.
type verdict struct {
	intact, damaged, lost int // carts equal to what was added, carts not, items missing
	unreadable            int // carts the shop would not show (counted in damaged, not in lost)
}

// check compares every shopper's cart with what the shop confirmed, then
// takes the cart as the new truth, so the next step counts only new damage.
func check(shoppers []*shopper) verdict {
	var v verdict
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cart, err := s.cart()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				v.damaged++
				v.unreadable++
			case slices.Equal(cart.Items, s.acked) || len(s.acked) == 0 && len(cart.Items) == 0:
				v.intact++
			default:
				v.damaged++
				for _, item := range s.acked {
					if !slices.Contains(cart.Items, item) {
						v.lost++
					}
				}
				s.acked = cart.Items
			}
		}()
	}
	wg.Wait()
	return v
}
