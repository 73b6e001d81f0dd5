package delivery

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// MigrateConfig configures Migrate. A nil *MigrateConfig means the defaults.
type MigrateConfig struct {
	// Schema receives River's tables; it must exist. Default the connection's search_path.
	// Give the Client the same Schema.
	Schema string
}

// Migrate creates or upgrades River's tables (river_job, river_leader, river_migration,
// river_queue, river_client, ...) with River's own migrator, then adds the partial index
// pgonce_delivery_ordering that ordered delivery uses and the outbox table
// pgonce_delivery_outbox that EnqueueTx inserts into. Each migration runs in its own
// transaction and needs no session state, so it also runs through PgBouncer in transaction
// pooling; but River's migrator takes no lock, so run it from one process at a time (a
// deploy step), or retry it: a concurrent run fails on River's version table.
func Migrate(ctx context.Context, pool *pgxpool.Pool, cfg *MigrateConfig) error {
	if pool == nil {
		return fmt.Errorf("%w: nil pool", ErrInvalidConfig)
	}
	var schema string
	if cfg != nil {
		schema = cfg.Schema
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema})
	if err != nil {
		return fmt.Errorf("delivery: migrate: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("delivery: migrate River: %w", err)
	}
	st := newStatements(schema)
	if _, err := pool.Exec(ctx, st.orderingIndex); err != nil {
		return fmt.Errorf("delivery: migrate: ordering index: %w", err)
	}
	if _, err := pool.Exec(ctx, st.outboxTable); err != nil {
		return fmt.Errorf("delivery: migrate: outbox table: %w", err)
	}
	return nil
}
