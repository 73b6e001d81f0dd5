package delivery_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/delivery"
)

// Environment of the worker process TestEndToEndKilledWorker starts (and kills).
const (
	helperEnv       = "DELIVERY_TEST_WORKER_DB"
	helperSchemaEnv = "DELIVERY_TEST_WORKER_SCHEMA"
)

// TestWorkerProcess is the worker process of TestEndToEndKilledWorker: run with helperEnv
// set, it delivers until it is killed. Otherwise it does nothing.
func TestWorkerProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv(helperEnv))
	require.NoError(t, err)
	cfg := killConfig(os.Getenv(helperSchemaEnv))
	c, err := delivery.New(pool, cfg)
	require.NoError(t, err)
	require.NoError(t, c.Start(ctx))
	select {} // until SIGKILL
}

func killConfig(schema string) *delivery.Config {
	cfg := fastConfig(schema)
	cfg.RequestTimeout, cfg.RescueAfter = time.Second, 2*time.Second
	return cfg
}

// At-least-once delivery into a dedupehttp receiver is an exactly-once effect: every message
// is applied once although the receiver fails with 5xx before applying some, loses the answer
// after applying others, and the worker process is killed (SIGKILL) while a receiver has
// applied a message and not yet answered. A second Client takes over the killed one's
// deliveries after RescueAfter and River's leader lease (about 15 s).
func TestEndToEndKilledWorker(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE effects (key text NOT NULL, at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)

	mw, err := dedupehttp.New(dedupehttp.Config{DB: db.Pool})
	require.NoError(t, err)
	apply := mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := dedupehttp.Tx(r.Context())
		key, _ := dedupehttp.Key(r.Context())
		if _, err := tx.Exec(r.Context(), `INSERT INTO effects (key) VALUES ($1)`, key); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	const n, killAt = 40, 10
	var (
		mu    sync.Mutex
		tries = map[string]int{}
	)
	kill := make(chan struct{})
	var killOnce sync.Once
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		tries[key]++
		try := tries[key]
		mu.Unlock()
		var i int
		_, _ = fmt.Sscanf(key, "msg-%d", &i)
		switch {
		case i == killAt && try == 1: // applied, then the worker dies before the answer
			apply.ServeHTTP(httptest.NewRecorder(), r)
			killOnce.Do(func() { close(kill) })
			<-r.Context().Done()
		case i%4 == 1 && try == 1: // fails before applying
			w.WriteHeader(http.StatusServiceUnavailable)
		case i%4 == 2 && try == 1: // applies, and the answer is lost on the way
			apply.ServeHTTP(httptest.NewRecorder(), r)
			w.WriteHeader(http.StatusBadGateway)
		default:
			apply.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() { rc.CloseClientConnections(); rc.Close() }) // a failed run may leave a handler waiting

	producer, err := delivery.New(db.Pool, killConfig(db.Schema)) // enqueues only
	require.NoError(t, err)
	var msgs []delivery.Message
	for i := range n {
		msgs = append(msgs, delivery.Message{URL: rc.URL + "/effects", Key: fmt.Sprintf("msg-%d", i), Body: []byte(`{}`)})
	}
	enqueue(t, producer, db.Pool, msgs...)

	worker := exec.Command(os.Args[0], "-test.run=^TestWorkerProcess$")
	worker.Env = append(os.Environ(), helperEnv+"="+db.URL, helperSchemaEnv+"="+db.Schema)
	require.NoError(t, worker.Start())
	select {
	case <-kill:
	case <-time.After(2 * time.Minute):
		_ = worker.Process.Kill()
		t.Fatal("the worker process never reached the message to be killed on")
	}
	require.NoError(t, worker.Process.Kill()) // SIGKILL: no clean-up, its deliveries stay running
	_ = worker.Wait()

	startClient(t, db.Pool, killConfig(db.Schema))
	waitFor(t, 3*time.Minute, func() bool {
		var done int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&done))
		return done == n
	}, "all %d messages delivered", n)

	var effects, distinct int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT key) FROM effects`).Scan(&effects, &distinct))
	assert.Equal(t, n, effects, "effects (a duplicate or a lost message)")
	assert.Equal(t, n, distinct)
	mu.Lock()
	defer mu.Unlock()
	assert.GreaterOrEqual(t, tries[fmt.Sprintf("msg-%d", killAt)], 2, "the killed delivery was sent again")
	assert.GreaterOrEqual(t, tries["msg-2"], 2)
}
