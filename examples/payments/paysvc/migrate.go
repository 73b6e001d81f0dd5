package paysvc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"

	paymigrations "github.com/pgonce/pgonce/examples/payments/migrations"
	"github.com/pgonce/pgonce/migrations"
)

// MigrationsTable records the provider's own schema version. The toolkit records its version
// in migrations.DefaultMigrationsTable and the order service in its own table, so the provider
// can share a database, or one schema, with either.
const MigrationsTable = "payments_schema_migrations"

// Migrate applies the toolkit's schema (dedupe_keys, fences) and then the provider's own
// (charges, declines, notifications, notification_arrivals) to the database at databaseURL,
// in the schema its search_path names. Safe to run from every instance at start-up:
// golang-migrate serialises concurrent runs with a session advisory lock, so behind
// PgBouncer give it a direct URL.
func Migrate(ctx context.Context, databaseURL string) error {
	if err := migrations.Up(ctx, databaseURL, nil); err != nil {
		return err
	}
	src, err := iofs.New(paymigrations.FS, ".")
	if err != nil {
		return err
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, pgx5URL(databaseURL)+"x-migrations-table="+MigrationsTable)
	if err != nil {
		return fmt.Errorf("paysvc: migrations: %w", err)
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("paysvc: migrations: %w", err)
	}
	return nil
}

// pgx5URL turns postgres://... into golang-migrate's pgx5://...?, ready for one more parameter.
func pgx5URL(databaseURL string) string {
	u := databaseURL
	for _, p := range []string{"postgres://", "postgresql://"} {
		if rest, ok := strings.CutPrefix(u, p); ok {
			u = "pgx5://" + rest
			break
		}
	}
	if strings.Contains(u, "?") {
		return u + "&"
	}
	return u + "?"
}
