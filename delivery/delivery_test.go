package delivery_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/delivery"
)

func TestDeliveredOnce(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, ok)
	c := startClient(t, db.Pool, fastConfig(db.Schema))
	ids := enqueue(t, c, db.Pool, delivery.Message{
		URL: rc.URL + "/hooks", Key: "order-1-confirmed", Body: []byte(`{"order":1}`),
		Header: map[string][]string{"content-type": {"application/json"}},
	})
	waitState(t, db.Pool, ids[0], "completed")
	got := rc.requests()
	require.Len(t, got, 1)
	assert.Equal(t, request{Method: "POST", Key: "order-1-confirmed", Body: `{"order":1}`, ContentType: "application/json", At: got[0].At}, got[0])
}

func TestKeyQuotedWhenNotAToken(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, ok)
	c := startClient(t, db.Pool, fastConfig(db.Schema))
	ids := enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: `a b"c`})
	waitState(t, db.Pool, ids[0], "completed")
	assert.Equal(t, `"a b\"c"`, rc.requests()[0].Key)
}

// Every retryable outcome is retried with the same key until a 2xx.
func TestRetried(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	fail := map[string]func(w http.ResponseWriter){
		"408": func(w http.ResponseWriter) { w.WriteHeader(408) },
		"425": func(w http.ResponseWriter) { w.WriteHeader(425) },
		"429": func(w http.ResponseWriter) { w.WriteHeader(429) },
		"500": func(w http.ResponseWriter) { w.WriteHeader(500) },
		"503": func(w http.ResponseWriter) { w.WriteHeader(503) },
		"599": func(w http.ResponseWriter) { w.WriteHeader(599) },
		"transport": func(w http.ResponseWriter) { // the connection drops with no answer
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}
		},
	}
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		if n <= 2 {
			fail[r.Header.Get("Idempotency-Key")](w)
			return
		}
		w.WriteHeader(200)
	})
	c := startClient(t, db.Pool, fastConfig(db.Schema))
	var msgs []delivery.Message
	for k := range fail {
		msgs = append(msgs, delivery.Message{URL: rc.URL, Key: k})
	}
	ids := enqueue(t, c, db.Pool, msgs...)
	for _, id := range ids {
		waitState(t, db.Pool, id, "completed")
	}
	perKey := map[string]int{}
	for _, r := range rc.requests() {
		perKey[r.Key]++
	}
	for k := range fail {
		assert.Equal(t, 3, perKey[k], "attempts for %s", k)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		switch {
		case n == 1 && r.Header.Get("Idempotency-Key") == "seconds":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		case n == 1:
			w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(503)
		default:
			w.WriteHeader(200)
		}
	})
	c := startClient(t, db.Pool, fastConfig(db.Schema)) // backoff alone would wait 2.5-5 ms
	ids := enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: "seconds"}, delivery.Message{URL: rc.URL, Key: "date"})
	for _, id := range ids {
		waitState(t, db.Pool, id, "completed")
	}
	first := map[string]time.Time{}
	gap := map[string]time.Duration{}
	for _, r := range rc.requests() {
		if t0, ok := first[r.Key]; ok {
			gap[r.Key] = r.At.Sub(t0)
		} else {
			first[r.Key] = r.At
		}
	}
	assert.GreaterOrEqual(t, gap["seconds"], 900*time.Millisecond)
	// An HTTP-date has one-second resolution: "in 2 s" may be 1.0 to 2.0 s away.
	assert.GreaterOrEqual(t, gap["date"], 900*time.Millisecond)
}

func TestMaxRetryAfterCaps(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(503)
			return
		}
		w.WriteHeader(200)
	})
	cfg := fastConfig(db.Schema)
	cfg.MaxRetryAfter = 50 * time.Millisecond
	c := startClient(t, db.Pool, cfg)
	ids := enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: "capped"})
	waitState(t, db.Pool, ids[0], "completed")
}

func TestDeadListedAndRedriven(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	accept := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		select {
		case <-accept:
			w.WriteHeader(201)
			return
		default:
		}
		if r.Header.Get("Idempotency-Key") == "refused" {
			w.WriteHeader(404)
			return
		}
		w.WriteHeader(500) // "exhausted": retried until its attempts run out
	})
	cfg := fastConfig(db.Schema)
	cfg.MaxAttempts = 3
	c := startClient(t, db.Pool, cfg)
	ids := enqueue(t, c, db.Pool,
		delivery.Message{URL: rc.URL, Key: "refused", Body: []byte("r")},
		delivery.Message{URL: rc.URL, Key: "exhausted", Body: []byte("e")})
	waitState(t, db.Pool, ids[0], "cancelled")
	waitState(t, db.Pool, ids[1], "discarded")

	ctx := context.Background()
	dead, err := c.ListDead(ctx, nil)
	require.NoError(t, err)
	require.Len(t, dead, 2)
	refusedID, exhaustedID := jobID(t, db.Pool, ids[0]), jobID(t, db.Pool, ids[1])
	assert.Equal(t, refusedID, dead[0].ID)
	assert.True(t, dead[0].Refused)
	assert.Equal(t, 1, dead[0].Attempts)
	assert.Contains(t, dead[0].LastError, "404")
	assert.Equal(t, delivery.Message{URL: rc.URL, Key: "refused", Body: []byte("r")}, dead[0].Message)
	assert.False(t, dead[1].Refused)
	assert.Equal(t, 3, dead[1].Attempts)
	assert.Contains(t, dead[1].LastError, "500")
	assert.False(t, dead[1].DiedAt.IsZero())
	page, err := c.ListDead(ctx, &delivery.ListDeadParams{AfterID: refusedID, Limit: 1})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, exhaustedID, page[0].ID)

	close(accept)
	for _, id := range []int64{refusedID, exhaustedID} {
		require.NoError(t, c.Redrive(ctx, id))
	}
	for _, id := range ids {
		waitState(t, db.Pool, id, "completed")
	}
	dead, err = c.ListDead(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, dead)
	assert.ErrorIs(t, c.Redrive(ctx, refusedID), delivery.ErrNotDead)
	assert.ErrorIs(t, c.Redrive(ctx, 1<<40), delivery.ErrNotFound)
	for _, r := range rc.requests() {
		assert.Contains(t, []string{"refused", "exhausted"}, r.Key) // the same key on every attempt
	}
}

// A re-driven message whose attempts ran out gets a fresh budget, not one attempt.
func TestRedriveGivesFreshAttempts(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, func(w http.ResponseWriter, n int, r *http.Request) {
		if n <= 3 { // dead after 2, then one failure after the re-drive
			w.WriteHeader(502)
			return
		}
		w.WriteHeader(200)
	})
	cfg := fastConfig(db.Schema)
	cfg.MaxAttempts = 2
	c := startClient(t, db.Pool, cfg)
	ids := enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: "k"})
	waitState(t, db.Pool, ids[0], "discarded")
	require.NoError(t, c.Redrive(context.Background(), jobID(t, db.Pool, ids[0])))
	waitState(t, db.Pool, ids[0], "completed")
	assert.Len(t, rc.requests(), 4)
}

// The outbox: a message enqueued in a transaction that rolls back is never delivered.
func TestEnqueueRolledBack(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, ok)
	c := startClient(t, db.Pool, fastConfig(db.Schema))
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY)`)
	require.NoError(t, err)
	errBusiness := errors.New("payment declined")
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders VALUES (1)`); err != nil {
			return err
		}
		if err := c.EnqueueTx(ctx, tx, delivery.Message{URL: rc.URL, Key: "order-1"}); err != nil {
			return err
		}
		return errBusiness
	})
	require.ErrorIs(t, err, errBusiness)
	ids := enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: "order-2"})
	waitState(t, db.Pool, ids[0], "completed")
	var jobs, queued int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*), (SELECT count(*) FROM pgonce_delivery_outbox) FROM river_job`).Scan(&jobs, &queued))
	assert.Equal(t, 1, jobs)
	assert.Zero(t, queued)
	for _, r := range rc.requests() {
		assert.Equal(t, "order-2", r.Key)
	}
}

func TestInvalidMessageRefused(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	c, err := delivery.New(db.Pool, fastConfig(db.Schema))
	require.NoError(t, err)
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'k'
	}
	for name, m := range map[string]delivery.Message{
		"no URL":          {Key: "k"},
		"relative URL":    {URL: "/hooks", Key: "k"},
		"ftp URL":         {URL: "ftp://example.com/x", Key: "k"},
		"no key":          {URL: "http://example.com"},
		"long key":        {URL: "http://example.com", Key: string(long)},
		"control in key":  {URL: "http://example.com", Key: "a\nb"},
		"non-ASCII key":   {URL: "http://example.com", Key: "clé"},
		"key header":      {URL: "http://example.com", Key: "k", Header: map[string][]string{"Idempotency-Key": {"x"}}},
		"length header":   {URL: "http://example.com", Key: "k", Header: map[string][]string{"content-length": {"1"}}},
		"bad header name": {URL: "http://example.com", Key: "k", Header: map[string][]string{"a b": {"x"}}},
		"CRLF in header":  {URL: "http://example.com", Key: "k", Header: map[string][]string{"X-A": {"x\r\nY: z"}}},
	} {
		ctx := context.Background()
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			return c.EnqueueTx(ctx, tx, m)
		})
		assert.ErrorIs(t, err, delivery.ErrInvalidMessage, name)
	}
	var queued int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pgonce_delivery_outbox`).Scan(&queued))
	assert.Zero(t, queued)
}

func TestConfigValidated(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	for name, cfg := range map[string]delivery.Config{
		"negative workers":       {Workers: -1},
		"too many workers":       {Workers: 10_001},
		"negative attempts":      {MaxAttempts: -1},
		"negative timeout":       {RequestTimeout: -time.Second},
		"cooldown under 1ms":     {FetchCooldown: time.Microsecond},
		"poll under 1ms":         {FetchPollInterval: time.Microsecond},
		"retry max below base":   {RetryBase: time.Minute, RetryMax: time.Second},
		"rescue before timeout":  {RequestTimeout: time.Minute, RescueAfter: time.Second},
		"bad method":             {Method: "PO ST"},
		"negative dead retained": {DeadRetention: -1},
	} {
		_, err := delivery.New(db.Pool, &cfg)
		assert.ErrorIs(t, err, delivery.ErrInvalidConfig, name)
	}
	_, err := delivery.New(nil, nil)
	assert.ErrorIs(t, err, delivery.ErrInvalidConfig)
	_, err = delivery.New(db.Pool, nil)
	assert.NoError(t, err)
	assert.ErrorIs(t, delivery.Migrate(context.Background(), nil, nil), delivery.ErrInvalidConfig)
}

// A configured method is used.
func TestMethod(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	rc := newReceiver(t, ok)
	cfg := fastConfig(db.Schema)
	cfg.Method = "PUT"
	c := startClient(t, db.Pool, cfg)
	ids := enqueue(t, c, db.Pool, delivery.Message{URL: rc.URL, Key: "put"})
	waitState(t, db.Pool, ids[0], "completed")
	assert.Equal(t, "PUT", rc.requests()[0].Method)
}
