package optimistic_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/optimistic"
)

// Update writes only if the version is still the one read, and says which of stale and
// missing it was when it did not write.
func ExampleTable_Update() {
	ctx := context.Background()
	pool := openExampleTable(ctx, `DROP TABLE IF EXISTS accounts;
		CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, version bigint NOT NULL DEFAULT 1, updated_at timestamptz);
		INSERT INTO accounts (id, email) VALUES (1, 'ann@example.com')`)
	defer pool.Close()
	accounts := optimistic.Table{Name: pgx.Identifier{"accounts"}, UpdatedAt: "updated_at"}

	var email string
	version, err := accounts.Get(ctx, pool, 1, []string{"email"}, &email)
	fmt.Println(email, version, err)

	newVersion, err := accounts.Update(ctx, pool, 1, version, optimistic.Set{Column: "email", Value: "ann@example.org"})
	fmt.Println(newVersion, err)

	// A second writer still holding version 1 is refused, and nothing is written.
	_, err = accounts.Update(ctx, pool, 1, version, optimistic.Set{Column: "email", Value: "someone@else"})
	var stale *optimistic.StaleError
	fmt.Println(errors.As(err, &stale), stale.Expected, stale.Current)

	_, err = accounts.Update(ctx, pool, 2, 1, optimistic.Set{Column: "email", Value: "bob@example.com"})
	fmt.Println(errors.Is(err, optimistic.ErrNotFound), errors.Is(err, optimistic.ErrStale))
	// Output:
	// ann@example.com 1 <nil>
	// 2 <nil>
	// true 1 2
	// true false
}
