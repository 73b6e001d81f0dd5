package pessimistic_test

import (
	"os"
	"testing"

	"github.com/pgonce/pgonce/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
