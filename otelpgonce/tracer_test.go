package otelpgonce_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/internal/pgtest"
	"github.com/pgonce/pgonce/otelpgonce"
)

type telemetry struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tracer *otelpgonce.Tracer
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	tracer, err := otelpgonce.NewTracer(&otelpgonce.Config{TracerProvider: tp, MeterProvider: mp})
	require.NoError(t, err)
	return &telemetry{spans: spans, reader: reader, tracer: tracer}
}

// take returns the spans ended since the last take, by name.
func (tm *telemetry) take(t *testing.T) map[string]tracetest.SpanStub {
	t.Helper()
	out := map[string]tracetest.SpanStub{}
	for _, s := range tm.spans.GetSpans() {
		require.NotContains(t, out, s.Name, "one span per component")
		out[s.Name] = s
	}
	tm.spans.Reset()
	return out
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// points returns the metric points of name: counter values or histogram counts and sums,
// keyed by their attribute sets' encoding ("pgonce.component=dedupe,pgonce.outcome=executed").
func (tm *telemetry) points(t *testing.T, name string) (counts map[string]int64, sums map[string]float64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tm.reader.Collect(context.Background(), &rm))
	counts, sums = map[string]int64{}, map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, otelpgonce.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					counts[p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
				}
			case metricdata.Histogram[float64]:
				assert.Equal(t, "s", m.Unit)
				for _, p := range d.DataPoints {
					k := p.Attributes.Encoded(attribute.DefaultEncoder())
					counts[k], sums[k] = int64(p.Count), p.Sum
				}
			default:
				t.Fatalf("%s: unexpected data %T", name, m.Data)
			}
		}
	}
	return counts, sums
}

// A request through the middleware and the Deduper, both traced: two nested spans per
// request and one metric point per component and outcome.
func TestEndToEndThroughMiddleware(t *testing.T) {
	tm := newTelemetry(t)
	db := pgtest.New(t, pgtest.URL(t), nil)
	const lockWait = 100 * time.Millisecond
	mw, err := dedupehttp.New(dedupehttp.Config{
		DB:     db.Pool,
		Runner: dedupe.New(&dedupe.Options{Tracer: tm.tracer, LockWait: lockWait}),
		Tracer: tm.tracer,
	})
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("POST /orders", mw.Required(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Block") != "" {
			entered <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":1}`))
	})))
	send := func(key, body string, hdr ...string) int {
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(body))
		r.Header.Set(dedupehttp.HeaderKey, key)
		if len(hdr) == 2 {
			r.Header.Set(hdr[0], hdr[1])
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}

	// First execution.
	require.Equal(t, http.StatusCreated, send("k1", `{"sku":"a"}`))
	spans := tm.take(t)
	require.Len(t, spans, 2)
	outer, inner := spans["pgonce.dedupehttp.request"], spans["pgonce.dedupe.do"]
	assert.Equal(t, outer.SpanContext.SpanID(), inner.Parent.SpanID(), "the Deduper's span is a child of the request's")
	a := attrs(outer)
	assert.Equal(t, "dedupehttp", a[otelpgonce.AttrComponent].AsString())
	assert.Equal(t, "POST /orders", a[otelpgonce.AttrScope].AsString())
	assert.Equal(t, dedupe.KeyHash("k1"), a[otelpgonce.AttrKeyHash].AsString())
	assert.NotContains(t, a, otelpgonce.AttrKey, "keys only when TraceKeys is set")
	assert.Equal(t, "executed", a[otelpgonce.AttrOutcome].AsString())
	assert.Equal(t, int64(201), a[otelpgonce.AttrHTTPStatus].AsInt64())
	assert.Equal(t, int64(1), a[otelpgonce.AttrAttempts].AsInt64())
	assert.Positive(t, a[otelpgonce.AttrWait].AsFloat64())
	assert.Equal(t, codes.Unset, outer.Status.Code)
	assert.Equal(t, "executed", attrs(inner)[otelpgonce.AttrOutcome].AsString())

	// Replay.
	require.Equal(t, http.StatusCreated, send("k1", `{"sku":"a"}`))
	spans = tm.take(t)
	a = attrs(spans["pgonce.dedupehttp.request"])
	assert.Equal(t, "replayed", a[otelpgonce.AttrOutcome].AsString())
	assert.Equal(t, "postgres", a[otelpgonce.AttrSource].AsString())
	assert.Equal(t, "postgres", attrs(spans["pgonce.dedupe.do"])[otelpgonce.AttrSource].AsString())

	// Same key, other body: 422, a refusal, not an error.
	require.Equal(t, http.StatusUnprocessableEntity, send("k1", `{"sku":"b"}`))
	spans = tm.take(t)
	a = attrs(spans["pgonce.dedupehttp.request"])
	assert.Equal(t, "mismatch", a[otelpgonce.AttrOutcome].AsString())
	assert.Equal(t, int64(422), a[otelpgonce.AttrHTTPStatus].AsInt64())
	assert.Equal(t, codes.Unset, spans["pgonce.dedupehttp.request"].Status.Code)

	// In progress: a duplicate arrives while the first holds the key, waits LockWait, gets 409.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		assert.Equal(t, http.StatusCreated, send("busy", `{}`, "X-Block", "1"))
	}()
	<-entered
	require.Equal(t, http.StatusConflict, send("busy", `{}`))
	spans = tm.take(t)
	close(release)
	wg.Wait()
	a = attrs(spans["pgonce.dedupehttp.request"])
	assert.Equal(t, "in_progress", a[otelpgonce.AttrOutcome].AsString())
	assert.Equal(t, int64(409), a[otelpgonce.AttrHTTPStatus].AsInt64())
	assert.GreaterOrEqual(t, a[otelpgonce.AttrWait].AsFloat64(), lockWait.Seconds())
	tm.take(t) // the blocked request's spans

	requests, _ := tm.points(t, otelpgonce.MetricRequests)
	for _, c := range []string{"dedupe", "dedupehttp"} {
		assert.Equal(t, map[string]int64{
			"pgonce.component=" + c + ",pgonce.outcome=executed":                        2,
			"pgonce.component=" + c + ",pgonce.outcome=replayed,pgonce.source=postgres": 1,
			"pgonce.component=" + c + ",pgonce.outcome=mismatch":                        1,
			"pgonce.component=" + c + ",pgonce.outcome=in_progress":                     1,
		}, filter(requests, "pgonce.component="+c+","))
	}
	durations, _ := tm.points(t, otelpgonce.MetricDuration)
	assert.Equal(t, int64(2), durations["pgonce.component=dedupehttp,pgonce.outcome=executed"])
	waits, waitSums := tm.points(t, otelpgonce.MetricWait)
	assert.Equal(t, int64(1), waits["pgonce.component=dedupe,pgonce.outcome=in_progress"])
	assert.GreaterOrEqual(t, waitSums["pgonce.component=dedupe,pgonce.outcome=in_progress"], lockWait.Seconds())
}

func filter(m map[string]int64, prefix string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// An error (here the function's own) marks the span failed and records the error.
func TestErrorSpan(t *testing.T) {
	tm := newTelemetry(t)
	ctx := tm.tracer.TraceDoStart(context.Background(), dedupe.TraceDoStartData{Component: "dedupe", Operation: "do", Scope: "s", Key: "visible"})
	tm.tracer.TraceDoEnd(ctx, dedupe.TraceDoEndData{Outcome: dedupe.OutcomeError, Err: assert.AnError})
	spans := tm.take(t)
	s := spans["pgonce.dedupe.do"]
	assert.Equal(t, codes.Error, s.Status.Code)
	require.Len(t, s.Events, 1)
	assert.Equal(t, "exception", s.Events[0].Name)
	assert.Equal(t, "visible", attrs(s)[otelpgonce.AttrKey].AsString(), "a key given by TraceKeys is reported")
	_, waitSums := tm.points(t, otelpgonce.MetricWait)
	assert.Empty(t, waitSums, "no claim ran, no wait point")
}

func TestNewTracerDefaultsToGlobals(t *testing.T) {
	tm := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tm.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tm.reader))
	prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})

	tr, err := otelpgonce.NewTracer(nil)
	require.NoError(t, err)
	ctx := tr.TraceDoStart(context.Background(), dedupe.TraceDoStartData{Component: "dedupe", Operation: "do"})
	tr.TraceDoEnd(ctx, dedupe.TraceDoEndData{Outcome: dedupe.OutcomeExecuted})
	assert.Contains(t, tm.take(t), "pgonce.dedupe.do")
	requests, _ := tm.points(t, otelpgonce.MetricRequests)
	assert.Equal(t, map[string]int64{"pgonce.component=dedupe,pgonce.outcome=executed": 1}, requests)
}
