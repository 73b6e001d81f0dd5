package otelpgonce

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgonce/pgonce/dedupe"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/pgonce/pgonce/otelpgonce"

// Names of the instruments.
const (
	MetricRequests = "pgonce.requests"
	MetricDuration = "pgonce.duration"
	MetricWait     = "pgonce.wait"
)

// Attribute keys on spans and metric points.
const (
	AttrComponent  = attribute.Key("pgonce.component")
	AttrScope      = attribute.Key("pgonce.scope")
	AttrKeyHash    = attribute.Key("pgonce.key_hash")
	AttrKey        = attribute.Key("pgonce.key")
	AttrOutcome    = attribute.Key("pgonce.outcome")
	AttrSource     = attribute.Key("pgonce.source")
	AttrAttempts   = attribute.Key("pgonce.attempts")
	AttrWait       = attribute.Key("pgonce.wait")
	AttrHTTPStatus = attribute.Key("http.response.status_code")
)

// Config configures a Tracer. A nil *Config, or zero fields, mean the defaults.
type Config struct {
	// TracerProvider creates the spans; default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the instruments; default otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Tracer is a dedupe.Tracer reporting to OpenTelemetry. Safe for concurrent use; create one
// and set it on every component you trace.
type Tracer struct {
	tracer   trace.Tracer
	requests metric.Int64Counter
	duration metric.Float64Histogram
	wait     metric.Float64Histogram
}

var _ dedupe.Tracer = (*Tracer)(nil)

// NewTracer creates the tracer and the instruments. It fails only when the MeterProvider
// refuses an instrument.
func NewTracer(cfg *Config) (*Tracer, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	meter := c.MeterProvider.Meter(ScopeName)
	t := &Tracer{tracer: c.TracerProvider.Tracer(ScopeName)}
	var err error
	if t.requests, err = meter.Int64Counter(MetricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Deduplicated requests that ended, by component and outcome.")); err != nil {
		return nil, fmt.Errorf("otelpgonce: %s: %w", MetricRequests, err)
	}
	if t.duration, err = meter.Float64Histogram(MetricDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of deduplicated requests.")); err != nil {
		return nil, fmt.Errorf("otelpgonce: %s: %w", MetricDuration, err)
	}
	if t.wait, err = meter.Float64Histogram(MetricWait, metric.WithUnit("s"),
		metric.WithDescription("Wall time of the statements claiming the key, including waits for concurrent duplicates.")); err != nil {
		return nil, fmt.Errorf("otelpgonce: %s: %w", MetricWait, err)
	}
	return t, nil
}

type componentKey struct{}

// TraceDoStart starts a span named pgonce.<component>.<operation> as a child of ctx's span.
func (t *Tracer) TraceDoStart(ctx context.Context, data dedupe.TraceDoStartData) context.Context {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, AttrComponent.String(data.Component), AttrScope.String(data.Scope))
	if data.KeyHash != "" {
		attrs = append(attrs, AttrKeyHash.String(data.KeyHash))
	}
	if data.Key != "" {
		attrs = append(attrs, AttrKey.String(data.Key))
	}
	ctx, _ = t.tracer.Start(ctx, "pgonce."+data.Component+"."+data.Operation,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
	// The metrics of TraceDoEnd need the component, which a span cannot be asked for.
	return context.WithValue(ctx, componentKey{}, data.Component)
}

// TraceDoEnd ends the span TraceDoStart started and records the metric points.
func (t *Tracer) TraceDoEnd(ctx context.Context, data dedupe.TraceDoEndData) {
	component, _ := ctx.Value(componentKey{}).(string)
	metricAttrs := make([]attribute.KeyValue, 0, 3)
	metricAttrs = append(metricAttrs, AttrComponent.String(component), AttrOutcome.String(string(data.Outcome)))
	if data.Source != dedupe.SourceExecuted {
		metricAttrs = append(metricAttrs, AttrSource.String(data.Source.String()))
	}

	span := trace.SpanFromContext(ctx)
	span.SetAttributes(metricAttrs[1:]...)
	span.SetAttributes(AttrAttempts.Int(data.Attempts), AttrWait.Float64(data.Wait.Seconds()))
	if component == dedupe.ComponentHTTP && data.Status != 0 {
		span.SetAttributes(AttrHTTPStatus.Int(data.Status))
	}
	if data.Outcome == dedupe.OutcomeError && data.Err != nil {
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, data.Err.Error())
	}
	span.End()

	set := metric.WithAttributeSet(attribute.NewSet(metricAttrs...))
	t.requests.Add(ctx, 1, set)
	t.duration.Record(ctx, data.Duration.Seconds(), set)
	if data.Wait > 0 {
		t.wait.Record(ctx, data.Wait.Seconds(), set)
	}
}
