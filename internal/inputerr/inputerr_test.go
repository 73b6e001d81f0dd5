package inputerr

import (
	"errors"
	"fmt"
	"testing"
)

func TestSentinelMatchesItselfAndParent(t *testing.T) {
	parent := errors.New("pkg: invalid argument")
	nilDB := New(parent, "pkg: nil database handle")
	other := New(parent, "pkg: nil function")
	err := fmt.Errorf("wrapped: %w", nilDB)
	if !errors.Is(err, nilDB) || !errors.Is(err, parent) {
		t.Fatalf("errors.Is should match the sentinel and its parent")
	}
	if errors.Is(err, other) {
		t.Fatalf("a sibling sentinel must not match")
	}
	if nilDB.Error() != "pkg: nil database handle" {
		t.Fatalf("message changed: %q", nilDB.Error())
	}
}
