package otelpgonce_test

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/otelpgonce"
)

// A Deduper reporting to OpenTelemetry: a request and its retry make two spans, the first
// executed, the second replayed from PostgreSQL. In a service, pass your SDK providers (or
// nil for the global ones) and an exporter of your choice.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tracer, err := otelpgonce.NewTracer(&otelpgonce.Config{TracerProvider: tp, MeterProvider: mp})
	if err != nil {
		panic(err)
	}

	d := dedupe.New(&dedupe.Options{Tracer: tracer})
	req := dedupe.Request{Scope: "orders.create", Key: "example-key"}
	for range 2 {
		_, err := d.Do(ctx, pool, req, func(context.Context, pgx.Tx) (dedupe.Response, error) {
			return dedupe.Response{Status: 201}, nil
		})
		if err != nil {
			panic(err)
		}
	}
	for _, s := range spans.GetSpans() {
		for _, kv := range s.Attributes {
			if kv.Key == otelpgonce.AttrOutcome {
				fmt.Println(s.Name, kv.Value.AsString())
			}
		}
	}
	// Output:
	// pgonce.dedupe.do executed
	// pgonce.dedupe.do replayed
}
