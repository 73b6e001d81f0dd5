package optimistic_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/optimistic"
)

// An HTTP handler that lets a client change a document only if it has seen its latest
// version: the version travels as the ETag, comes back in If-Match, and a stale one is
// answered 412 Precondition Failed.
func ExampleIfMatch() {
	ctx := context.Background()
	pool := openExampleTable(ctx, `DROP TABLE IF EXISTS docs;
		CREATE TABLE docs (id int PRIMARY KEY, title text NOT NULL, version bigint NOT NULL DEFAULT 1);
		INSERT INTO docs (id, title) VALUES (1, 'draft')`)
	defer pool.Close()
	docs := optimistic.Table{Name: pgx.Identifier{"docs"}}

	rename := func(w http.ResponseWriter, r *http.Request) {
		pre := optimistic.IfMatch(r.Header)
		if !pre.Present {
			w.WriteHeader(http.StatusPreconditionRequired)
			return
		}
		var title string
		version, err := docs.Get(r.Context(), pool, 1, []string{"title"}, &title)
		if err == nil {
			err = pre.Check(version)
		}
		if err == nil {
			version, err = docs.Update(r.Context(), pool, 1, version, optimistic.Set{Column: "title", Value: r.URL.Query().Get("title")})
		}
		if status := optimistic.HTTPStatus(err); status != 0 {
			w.WriteHeader(status)
			return
		} else if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("ETag", optimistic.ETag(version))
	}
	send := func(ifMatch string) *http.Response {
		r := httptest.NewRequest(http.MethodPatch, "/docs/1?title=final", nil)
		if ifMatch != "" {
			r.Header.Set("If-Match", ifMatch)
		}
		w := httptest.NewRecorder()
		rename(w, r)
		return w.Result()
	}

	first := send(optimistic.ETag(1)) // the client read version 1
	fmt.Println(first.StatusCode, first.Header.Get("ETag"))
	fmt.Println(send(optimistic.ETag(1)).StatusCode) // the same client again: version 1 is stale
	fmt.Println(send(`W/"v2"`).StatusCode)           // a weak tag never matches
	fmt.Println(send("").StatusCode)                 // no If-Match at all
	// Output:
	// 200 "v2"
	// 412
	// 412
	// 428
}
