package redisguard_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgonce/pgonce/redisguard"
)

// A submit token is issued with the form and consumed by the first submission; a second
// submission of the same form is refused.
func ExampleTokens() {
	ctx := context.Background()
	rdb := newRedis()
	defer rdb.Close()
	tokens := redisguard.NewTokens(rdb, nil)

	tok, err := tokens.Issue(ctx, "checkout:user-42", 10*time.Minute)
	if err != nil {
		panic(err)
	}
	fmt.Println("token length:", len(tok))
	fmt.Println("first submit:", tokens.Consume(ctx, "checkout:user-42", tok))

	err = tokens.Consume(ctx, "checkout:user-42", tok)
	fmt.Println("second submit used:", errors.Is(err, redisguard.ErrTokenUsed))
	err = tokens.Consume(ctx, "checkout:user-7", tok)
	fmt.Println("other scope unknown:", errors.Is(err, redisguard.ErrTokenUnknown))
	// Output:
	// token length: 43
	// first submit: <nil>
	// second submit used: true
	// other scope unknown: true
}
