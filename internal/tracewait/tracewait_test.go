package tracewait

import (
	"context"
	"testing"
	"time"
)

func TestClaimAddsToEveryEnclosingMeter(t *testing.T) {
	ctx, outer := With(context.Background())
	ctx, inner := With(ctx)
	stop := Claim(ctx)
	time.Sleep(2 * time.Millisecond) // the thing measured is elapsed time
	stop()
	if inner.Wait() < 2*time.Millisecond {
		t.Fatalf("inner wait %v, want at least 2ms", inner.Wait())
	}
	if outer.Wait() != inner.Wait() {
		t.Fatalf("outer wait %v, inner %v: want equal", outer.Wait(), inner.Wait())
	}
}

func TestClaimWithoutMeterDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { Claim(ctx)() }); n != 0 {
		t.Fatalf("Claim without a meter: %v allocs, want 0", n)
	}
}
