package ordersvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"

	ordermigrations "github.com/pgonce/pgonce/examples/orders/migrations"
	"github.com/pgonce/pgonce/migrations"
)

// MigrationsTable records the service's own schema version. The toolkit records its version
// in its own table (migrations.DefaultMigrationsTable), so the two never collide.
const MigrationsTable = "orders_schema_migrations"

// Migrate applies the toolkit's schema (dedupe_keys, fences) and then the service's own
// (products, orders, daily_reports, outbox). Safe to run from every instance at start-up:
// golang-migrate serialises concurrent runs with an advisory lock.
func Migrate(ctx context.Context, databaseURL string) error {
	if err := migrations.Up(ctx, databaseURL, nil); err != nil {
		return err
	}
	src, err := iofs.New(ordermigrations.FS, ".")
	if err != nil {
		return err
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, pgx5URL(databaseURL)+"x-migrations-table="+MigrationsTable)
	if err != nil {
		return fmt.Errorf("orders migrations: %w", err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("orders migrations: %w", err)
	}
	return nil
}

// pgx5URL turns postgres://... into golang-migrate's pgx5://...?, ready for one more parameter.
func pgx5URL(databaseURL string) string {
	u := databaseURL
	for _, p := range []string{"postgres://", "postgresql://"} {
		if len(u) > len(p) && u[:len(p)] == p {
			u = "pgx5://" + u[len(p):]
		}
	}
	for i := 0; i < len(u); i++ {
		if u[i] == '?' {
			return u + "&"
		}
	}
	return u + "?"
}
