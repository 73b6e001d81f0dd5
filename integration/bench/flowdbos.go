package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/flow"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// The three-step request both peers run: reserve (a local transaction inserting the order),
// charge (a call to a provider that answers 200 at once, sending an outbound idempotency
// key), confirm (a local transaction updating the order, then the response). The SQL and the
// HTTP call are the same for both; only the machinery around them differs.
const (
	// FlowSchema is the business table of the three-step request.
	FlowSchema = `CREATE TABLE bench_flow_orders (
	id          bigserial PRIMARY KEY,
	request_key text NOT NULL,
	payload     text NOT NULL,
	state       text NOT NULL DEFAULT 'reserved',
	charge      text,
	created_at  timestamptz NOT NULL DEFAULT now()
)`
	insertFlowOrder  = `INSERT INTO bench_flow_orders (request_key, payload) VALUES ($1, $2) RETURNING id`
	confirmFlowOrder = `UPDATE bench_flow_orders SET state = 'confirmed', charge = $2 WHERE id = $1`

	// FlowName is the flow's name and the DBOS workflow's.
	FlowName = "bench.order"
	// KeyHeader carries the outbound idempotency key to the provider.
	KeyHeader = "Idempotency-Key"
)

// FlowOptions tunes OpenFlow. Every DBOS polling knob the run touches is set here, explicitly.
type FlowOptions struct {
	// Queue registers a DBOS queue for DBOSQueueDo. Its runner polls every QueuePoll for the
	// whole run, whichever peer is measured, so it is off unless queue mode is measured.
	Queue bool
	// QueuePoll is the base polling interval of the DBOS queue (DBOS default 1s) and the
	// interval at which a queued workflow's handle polls for its result.
	QueuePoll time.Duration
	// MaxConns caps the one pool both peers share; default 40 (32 clients and DBOS's
	// listener and queue runner).
	MaxConns int32
}

// FlowEnv is one process's side-by-side of flow and DBOS: one pool (traced) shared by the
// flow Runner, DBOS's system database and DBOS's transactions; one provider; one HTTP client.
type FlowEnv struct {
	Pool    *pgxpool.Pool
	Counter *StmtCounter
	Runner  *flow.Runner
	// DBOSSchema holds DBOS's own tables (a schema per run, dropped by the close function).
	DBOSSchema string

	dctx     dbos.Context
	ds       *dbos.DataSource
	queue    dbos.Queue
	poll     time.Duration
	provider *httptest.Server
	client   *http.Client
	calls    atomic.Int64
}

// OpenFlow creates a fresh schema at baseURL with the toolkit's migrations and the business
// table, a DBOS context whose tables live in a schema of their own, registers the flow and
// the workflow, and launches DBOS. One per process: DBOS wants one context per process.
func OpenFlow(ctx context.Context, baseURL string, opts FlowOptions) (*FlowEnv, func(), error) {
	if opts.QueuePoll <= 0 {
		opts.QueuePoll = 50 * time.Millisecond
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 40
	}
	db, drop, err := pgtest.Create(ctx, baseURL, "benchflow", &pgtest.Options{MaxConns: 1})
	if err != nil {
		return nil, nil, err
	}
	e := &FlowEnv{Counter: &StmtCounter{}, DBOSSchema: db.Schema + "_dbos", poll: opts.QueuePoll}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, drop)
	fail := func(err error) (*FlowEnv, func(), error) { closeAll(); return nil, nil, err }

	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		return fail(err)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.Tracer = e.Counter
	if e.Pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fail(err)
	}
	closers = append(closers, e.Pool.Close)
	closers = append(closers, func() {
		// DBOS's schema is not the test schema: drop it by name.
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(cctx, baseURL); err == nil {
			_, _ = c.Exec(cctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{e.DBOSSchema}.Sanitize()+" CASCADE")
			_ = c.Close(cctx)
		}
	})
	if _, err := e.Pool.Exec(ctx, FlowSchema); err != nil {
		return fail(fmt.Errorf("bench flow schema: %w", err))
	}

	e.provider = httptest.NewServer(http.HandlerFunc(e.serveCharge))
	closers = append(closers, e.provider.Close)
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128}, Timeout: 10 * time.Second}
	closers = append(closers, e.client.CloseIdleConnections)

	if e.Runner, err = flow.New(e.Pool, []flow.Flow{{Name: FlowName, Steps: []flow.Step{
		flow.Local("reserve", e.flowReserve),
		flow.Foreign("charge", e.flowCharge),
		flow.Local("confirm", e.flowConfirm),
	}}}, nil); err != nil {
		return fail(err)
	}

	if e.dctx, err = dbos.NewContext(ctx, dbos.Config{
		AppName:        "pgonce-bench",
		SystemDBPool:   e.Pool,
		DatabaseSchema: e.DBOSSchema,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		// Not used by this workload, set so that no default polls behind the measurement.
		SchedulerPollingInterval:     time.Minute,
		NotificationCoalesceInterval: time.Millisecond,
	}); err != nil {
		return fail(fmt.Errorf("dbos: %w", err))
	}
	// The data source is the system database's own pool: DBOS then runs each transaction step
	// and its checkpoint in one transaction, as flow does (no second database to reconcile).
	if e.ds, err = dbos.NewDataSource(e.dctx, e.Pool); err != nil {
		return fail(fmt.Errorf("dbos data source: %w", err))
	}
	dbos.RegisterWorkflow(e.dctx, e.dbosWorkflow, dbos.WithWorkflowName(FlowName))
	if opts.Queue {
		if e.queue, err = dbos.RegisterQueue(e.dctx, "bench_flow", dbos.WithQueueBasePollingInterval(opts.QueuePoll)); err != nil {
			return fail(fmt.Errorf("dbos queue: %w", err))
		}
	}
	if err := dbos.Launch(e.dctx); err != nil {
		return fail(fmt.Errorf("dbos launch: %w", err))
	}
	closers = append(closers, func() { _ = dbos.Shutdown(e.dctx, 10*time.Second) })
	return e, closeAll, nil
}

// serveCharge is the provider: it refuses a call without an idempotency key and answers
// every other at once.
func (e *FlowEnv) serveCharge(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if r.Header.Get(KeyHeader) == "" {
		http.Error(w, "no idempotency key", http.StatusBadRequest)
		return
	}
	n := e.calls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"id":"ch_` + strconv.FormatInt(n, 10) + `"}`))
}

// Calls returns how many charges the provider has answered.
func (e *FlowEnv) Calls() int64 { return e.calls.Load() }

// charge makes the foreign call both peers make.
func (e *FlowEnv) charge(ctx context.Context, key string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.provider.URL+"/charges", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(KeyHeader, key)
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("provider answered %d", resp.StatusCode)
	}
	return body, nil
}

func (e *FlowEnv) flowReserve(ctx context.Context, tx pgx.Tx, st *flow.State) ([]byte, error) {
	var id int64
	if err := tx.QueryRow(ctx, insertFlowOrder, st.Key, string(st.Input)).Scan(&id); err != nil {
		return nil, err
	}
	return strconv.AppendInt(nil, id, 10), nil
}

func (e *FlowEnv) flowCharge(ctx context.Context, st *flow.State) ([]byte, error) {
	return e.charge(ctx, st.OutboundKey("charge"))
}

func (e *FlowEnv) flowConfirm(ctx context.Context, tx pgx.Tx, st *flow.State) ([]byte, error) {
	id, _ := st.Output("reserve")
	ch, _ := st.Output("charge")
	n, err := strconv.ParseInt(string(id), 10, 64)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, confirmFlowOrder, n, string(ch)); err != nil {
		return nil, err
	}
	return nil, flow.Finish(dedupe.Response{Status: http.StatusCreated, Body: []byte(`{"order":` + string(id) + `}`)})
}

// BareDo runs the three steps with no recovery at all: the insert in one transaction, the
// call, the update in another. It is the floor under both peers (what the work itself costs,
// so that each peer's overhead per step can be read off), not an alternative: a crash
// between two steps loses the request's place, and a retry repeats everything.
func (e *FlowEnv) BareDo() Do {
	return func(ctx context.Context, s Send) error {
		var id int64
		if err := pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, insertFlowOrder, s.Key, string(s.Payload)).Scan(&id)
		}); err != nil {
			return err
		}
		ch, err := e.charge(ctx, "bare-"+s.Key)
		if err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, confirmFlowOrder, id, string(ch))
			return err
		})
	}
}

// DBOSInput is the DBOS workflow's input.
type DBOSInput struct {
	Key     string `json:"key"`
	Payload string `json:"payload"`
}

// DBOSOutput is the DBOS workflow's result: the response flow would store.
type DBOSOutput struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func (e *FlowEnv) dbosWorkflow(ctx dbos.Context, in DBOSInput) (DBOSOutput, error) {
	id, err := dbos.RunAsTransaction(ctx, e.ds, func(ctx context.Context, tx dbos.Tx) (int64, error) {
		var id int64
		err := tx.QueryRow(ctx, insertFlowOrder, in.Key, in.Payload).Scan(&id)
		return id, err
	}, dbos.WithStepName("reserve"))
	if err != nil {
		return DBOSOutput{}, err
	}
	wid, err := dbos.GetWorkflowID(ctx)
	if err != nil {
		return DBOSOutput{}, err
	}
	ch, err := dbos.RunAsStep(ctx, func(ctx context.Context) (string, error) {
		b, err := e.charge(ctx, wid+"-charge") // DBOS's outbound key: workflow id and step
		return string(b), err
	}, dbos.WithStepName("charge"))
	if err != nil {
		return DBOSOutput{}, err
	}
	if _, err := dbos.RunAsTransaction(ctx, e.ds, func(ctx context.Context, tx dbos.Tx) (bool, error) {
		_, err := tx.Exec(ctx, confirmFlowOrder, id, ch)
		return true, err
	}, dbos.WithStepName("confirm")); err != nil {
		return DBOSOutput{}, err
	}
	return DBOSOutput{Status: http.StatusCreated, Body: `{"order":` + strconv.FormatInt(id, 10) + `}`}, nil
}

// FlowDo runs one send through the flow Runner.
func (e *FlowEnv) FlowDo() Do {
	return func(ctx context.Context, s Send) error {
		res, err := e.Runner.Run(ctx, FlowName, dedupe.Request{
			Scope:       FlowName,
			Key:         s.Key,
			Fingerprint: dedupe.Fingerprint("POST", "/orders", s.Payload),
		}, s.Payload)
		if err != nil {
			return err
		}
		if res.Response.Status != http.StatusCreated {
			return fmt.Errorf("flow answered %d", res.Response.Status)
		}
		return nil
	}
}

// DBOSDo runs one send as a DBOS workflow in this process (RunWorkflow, then GetResult), the
// workflow id being the request's key: DBOS's own idempotency.
func (e *FlowEnv) DBOSDo() Do {
	return func(_ context.Context, s Send) error {
		h, err := dbos.RunWorkflow(e.dctx, e.dbosWorkflow, DBOSInput{Key: s.Key, Payload: string(s.Payload)}, dbos.WithWorkflowID(s.Key))
		if err != nil {
			return err
		}
		return checkDBOS(h.GetResult())
	}
}

// DBOSQueueDo enqueues one send on a DBOS queue and waits for its result: the queue runner
// of this process dequeues it after up to FlowOptions.QueuePoll.
func (e *FlowEnv) DBOSQueueDo() Do {
	return func(_ context.Context, s Send) error {
		if e.queue == nil {
			return errors.New("bench: DBOS queue mode needs FlowOptions.Queue")
		}
		h, err := dbos.RunWorkflow(e.dctx, e.dbosWorkflow, DBOSInput{Key: s.Key, Payload: string(s.Payload)},
			dbos.WithWorkflowID(s.Key), dbos.WithQueue(e.queue))
		if err != nil {
			return err
		}
		return checkDBOS(h.GetResult(dbos.WithHandlePollingInterval(e.poll)))
	}
}

func checkDBOS(out DBOSOutput, err error) error {
	if err != nil {
		return err
	}
	if out.Status != http.StatusCreated {
		return fmt.Errorf("dbos answered %d", out.Status)
	}
	return nil
}

// ResetFlow empties the business table, flow's tables and DBOS's workflow tables between
// cells, so that neither peer works against the other's (or an earlier cell's) rows.
func (e *FlowEnv) ResetFlow(ctx context.Context) error {
	_, err := e.Pool.Exec(ctx, `TRUNCATE bench_flow_orders, flow_requests, flow_steps`)
	if err != nil {
		return err
	}
	_, err = e.Pool.Exec(ctx, fmt.Sprintf(`TRUNCATE %s.workflow_status, %[1]s.operation_outputs CASCADE`, pgx.Identifier{e.DBOSSchema}.Sanitize()))
	return err
}

// CheckFlow reads what a cell left: requests not confirmed, orders created more than once.
// Both must be zero after every request returned without error.
func (e *FlowEnv) CheckFlow(ctx context.Context) (unconfirmed, duplicates int, err error) {
	err = e.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state <> 'confirmed'), count(*) - count(DISTINCT request_key) FROM bench_flow_orders`).
		Scan(&unconfirmed, &duplicates)
	return unconfirmed, duplicates, err
}

// errFlowCheck reports a cell that left unconfirmed or duplicated orders.
var errFlowCheck = errors.New("bench: flow check")

// FlowCheckError wraps errFlowCheck with the counts.
func FlowCheckError(unconfirmed, duplicates int) error {
	if unconfirmed == 0 && duplicates == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d unconfirmed orders, %d duplicated", errFlowCheck, unconfirmed, duplicates)
}
