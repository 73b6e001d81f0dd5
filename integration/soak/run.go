// Package soak drives the order service with a mixed, hostile workload and then checks the
// history it recorded against what PostgreSQL holds, with a checker that shares no code with
// the toolkit. cmd/soak runs it standalone (`make soak`); the fault tests run it while they
// break things.
package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FailHeader asks the soak build of the order service to fail the request after its writes
// (the service's AfterOrder hook returns an error), so the transaction must roll back.
const FailHeader = "X-Soak-Fail"

// Mix weights the scenarios of a logical request (one key).
type Mix struct {
	Single  int // send once, retry only on 409/5xx/timeouts until a definitive answer
	Retry   int // definitive answer, then 1-2 more sequential sends of the same request
	Burst   int // 2-5 sends of the same request at the same instant, to random instances
	Reuse   int // definitive answer, then the same key with a changed body (expect 422)
	Fail    int // the server fails the first attempt after writing; half are then retried
	Abandon int // the client gives up after 1-20ms (outcome unknown), then retries
}

// DefaultMix is the mix cmd/soak uses.
var DefaultMix = Mix{Single: 35, Retry: 15, Burst: 20, Reuse: 5, Fail: 15, Abandon: 10}

// Config describes a soak run.
type Config struct {
	Targets  []string       // base URLs of the instances
	Clients  int            // concurrent clients; default 32
	Duration time.Duration  // how long new keys are started; default 60s
	SKUs     map[string]int // products to order and their seeded stock
	Mix      Mix            // default DefaultMix
	RunID    string         // prefix of every key of the run; default from the clock
	Client   *http.Client   // default: 10s timeout
}

// Event is one request and what came back.
type Event struct {
	Key      string    `json:"key"`
	Scenario string    `json:"scenario"`
	Body     string    `json:"body"`
	Fail     bool      `json:"fail,omitempty"`     // asked the server to fail
	Timeout  bool      `json:"abandon,omitempty"`  // sent with a tiny client timeout
	Status   int       `json:"status"`             // 0: no answer (transport error, timeout)
	Problem  string    `json:"problem,omitempty"`  // problem type, for problem+json answers
	Replayed bool      `json:"replayed,omitempty"` // Idempotent-Replayed: true
	Resp     []byte    `json:"resp,omitempty"`
	Err      string    `json:"err,omitempty"`
	At       time.Time `json:"at"`
}

// Record is the history of a run.
type Record struct {
	RunID  string
	mu     sync.Mutex
	Events []Event
	// Scenarios maps each key to its scenario.
	Scenarios map[string]string
}

func (r *Record) add(e Event) {
	r.mu.Lock()
	r.Events = append(r.Events, e)
	r.mu.Unlock()
}

// WriteJSONL writes one event per line.
func (r *Record) WriteJSONL(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, e := range r.Events {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}

type order struct {
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
}

// Run drives the targets for cfg.Duration and returns the record. Requests in flight when
// the duration ends are finished (each logical request settles), so Run returns somewhat
// after cfg.Duration.
func Run(ctx context.Context, cfg Config) (*Record, error) {
	if len(cfg.Targets) == 0 || len(cfg.SKUs) == 0 {
		return nil, fmt.Errorf("soak: Targets and SKUs are required")
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 32
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 60 * time.Second
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix
	}
	if cfg.RunID == "" {
		cfg.RunID = "soak-" + time.Now().UTC().Format("150405.000")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	var skus []string
	for s := range cfg.SKUs {
		skus = append(skus, s)
	}
	rec := &Record{RunID: cfg.RunID, Scenarios: map[string]string{}}
	var scenMu sync.Mutex
	deadline := time.Now().Add(cfg.Duration)
	var seq atomic.Int64
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			cl := &client{cfg: cfg, rec: rec, rng: rng}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				key := fmt.Sprintf("%s-%d", cfg.RunID, seq.Add(1))
				o := order{CustomerID: fmt.Sprintf("cust-%02d", rng.IntN(50)), SKU: skus[rng.IntN(len(skus))], Quantity: 1 + rng.IntN(3)}
				scenario := cl.pick()
				scenMu.Lock()
				rec.Scenarios[key] = scenario
				scenMu.Unlock()
				cl.run(ctx, scenario, key, o)
			}
		})
	}
	wg.Wait()
	return rec, ctx.Err()
}

type client struct {
	cfg Config
	rec *Record
	rng *rand.Rand
}

func (c *client) pick() string {
	m := c.cfg.Mix
	n := c.rng.IntN(m.Single + m.Retry + m.Burst + m.Reuse + m.Fail + m.Abandon)
	for _, s := range []struct {
		w    int
		name string
	}{{m.Single, "single"}, {m.Retry, "retry"}, {m.Burst, "burst"}, {m.Reuse, "reuse"}, {m.Fail, "fail"}, {m.Abandon, "abandon"}} {
		if n < s.w {
			return s.name
		}
		n -= s.w
	}
	return "single"
}

func (c *client) target() string { return c.cfg.Targets[c.rng.IntN(len(c.cfg.Targets))] }

func (c *client) run(ctx context.Context, scenario, key string, o order) {
	body, _ := json.Marshal(o)
	switch scenario {
	case "single":
		c.settle(ctx, scenario, key, body)
	case "retry":
		c.settle(ctx, scenario, key, body)
		for range 1 + c.rng.IntN(2) {
			c.send(ctx, scenario, key, body, false, 0)
		}
	case "burst":
		n := 2 + c.rng.IntN(4)
		start := make(chan struct{})
		var wg sync.WaitGroup
		targets := make([]string, n)
		for i := range targets {
			targets[i] = c.target()
		}
		for i := range n {
			wg.Go(func() {
				<-start
				c.sendTo(ctx, targets[i], scenario, key, body, false, 0)
			})
		}
		close(start)
		wg.Wait()
		c.settle(ctx, scenario, key, body)
	case "reuse":
		c.settle(ctx, scenario, key, body)
		changed := o
		changed.Quantity += 10
		b, _ := json.Marshal(changed)
		c.send(ctx, scenario, key, b, false, 0)
	case "fail":
		c.send(ctx, scenario, key, body, true, 0)
		if c.rng.IntN(2) == 0 {
			c.settle(ctx, scenario, key, body)
		}
	case "abandon":
		c.send(ctx, scenario, key, body, false, time.Duration(1+c.rng.IntN(20))*time.Millisecond)
		c.settle(ctx, scenario, key, body)
	}
}

// settle sends until a definitive answer: anything but 409 in progress, 5xx or no answer.
func (c *client) settle(ctx context.Context, scenario, key string, body []byte) {
	for attempt := 0; attempt < 50 && ctx.Err() == nil; attempt++ {
		e := c.send(ctx, scenario, key, body, false, 0)
		if e.Status != 0 && e.Status < 500 && !strings.HasSuffix(e.Problem, "idempotency-key-in-progress") {
			return
		}
		time.Sleep(time.Duration(5+c.rng.IntN(20)) * time.Millisecond) // client back-off between retries
	}
}

func (c *client) send(ctx context.Context, scenario, key string, body []byte, fail bool, timeout time.Duration) Event {
	return c.sendTo(ctx, c.target(), scenario, key, body, fail, timeout)
}

func (c *client) sendTo(ctx context.Context, target, scenario, key string, body []byte, fail bool, timeout time.Duration) Event {
	e := Event{Key: key, Scenario: scenario, Body: string(body), Fail: fail, Timeout: timeout > 0, At: time.Now()}
	defer func() { c.rec.add(e) }()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"/orders", bytes.NewReader(body))
	if err != nil {
		e.Err = err.Error()
		return e
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	if fail {
		req.Header.Set(FailHeader, "1")
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		e.Err = err.Error()
		return e
	}
	defer resp.Body.Close()
	e.Resp, err = io.ReadAll(resp.Body)
	if err != nil {
		e.Err = err.Error()
		return e
	}
	e.Status = resp.StatusCode
	e.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(e.Resp, &p)
		e.Problem = p.Type
	}
	return e
}
