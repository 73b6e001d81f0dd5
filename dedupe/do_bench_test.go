package dedupe_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/internal/pgtest"
)

// BenchmarkDo measures Do's cost per call, allocations included, for a first execution and
// for a replay (run with -benchmem; it needs DEDUPE_TEST_DATABASE_URL).
func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b, pgtest.URL(b), nil)
	fn := func(context.Context, pgx.Tx) (dedupe.Response, error) {
		return dedupe.Response{Status: 201, Body: []byte(`{"id":1}`)}, nil
	}
	for _, bc := range []struct {
		name string
		opts *dedupe.Options
	}{
		{"NilTracer", nil},
		{"NopTracer", &dedupe.Options{Tracer: nopTracer{}}},
	} {
		d := dedupe.New(bc.opts)
		b.Run(bc.name+"/Execute", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				req := dedupe.Request{Scope: "bench." + bc.name, Key: strconv.Itoa(i)}
				if _, err := d.Do(ctx, db.Pool, req, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/Replay", func(b *testing.B) {
			b.ReportAllocs()
			req := dedupe.Request{Scope: "bench." + bc.name, Key: "replayed"}
			if _, err := d.Do(ctx, db.Pool, req, fn); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := d.Do(ctx, db.Pool, req, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type nopTracer struct{}

func (nopTracer) TraceDoStart(ctx context.Context, _ dedupe.TraceDoStartData) context.Context {
	return ctx
}
func (nopTracer) TraceDoEnd(context.Context, dedupe.TraceDoEndData) {}
