// Package otelpgonce reports pgonce's requests to OpenTelemetry: a span per traced request
// and three instruments, from the dedupe.Tracer hooks of the dedupe core, the Redis guard and
// the HTTP middleware. It is its own Go module, so the toolkit's users who do not want
// OpenTelemetry do not inherit it.
//
// Spans are named "pgonce.<component>.<operation>": pgonce.dedupehttp.request,
// pgonce.redisguard.do, pgonce.dedupe.do, and pgonce.redisguard.obtain for
// redisguard.Locker.Obtain (outcome obtained or not_obtained; counted in pgonce.requests
// too, its wait being the time spent obtaining). Each carries pgonce.scope, pgonce.key_hash
// (pgonce.key only when the component's TraceKeys option is set), pgonce.outcome,
// pgonce.attempts, pgonce.source for replays, pgonce.wait (seconds) and, for the middleware,
// http.response.status_code. Outcome "error" marks the span as failed and records the error;
// refusals (mismatch, in_progress, invalid) are normal outcomes and do not.
//
// Instruments, each with the attributes pgonce.component and pgonce.outcome (and
// pgonce.source on replays), never the scope or the key, whose cardinality is unbounded:
//
//	pgonce.requests  counter    requests that ended, by outcome
//	pgonce.duration  histogram  request duration, seconds
//	pgonce.wait      histogram  time spent claiming the key (dedupe.TraceDoEndData.Wait), seconds;
//	                            recorded only when a claim ran
//
// A request that passes through several traced components (middleware, guard, deduper) is
// counted once by each; filter on pgonce.component.
//
// Usage:
//
//	tracer, err := otelpgonce.NewTracer(nil) // the global TracerProvider and MeterProvider
//	if err != nil { ... }
//	mw, err := dedupehttp.New(dedupehttp.Config{DB: pool, Tracer: tracer})
//
// Combine it with other tracers with dedupe.MultiTracer.
package otelpgonce
