// Package payclient is the order service's client of the payment provider
// (examples/payments): one call, Charge, that sends one attempt with the caller's
// idempotency key and says which of three things happened.
//
//	ch, err := c.Charge(ctx, key, payclient.ChargeRequest{Amount: 1999, Currency: "usd", Card: "tok_visa", Reference: "order-42"})
//	switch {
//	case err == nil:                             // charged: ch.ID (ch.Replayed on a retry)
//	case errors.Is(err, payclient.ErrDeclined):  // definite: no charge, never will be for this key
//	case payclient.IsIndeterminate(err):         // unknown: retry later with the SAME key
//	default:                                     // definite: the provider refused the request (a bug)
//	}
//
// # Definite and indeterminate
//
// A definite outcome is one the provider committed or refused to start: a 201 (or its replay)
// is a charge, a 402 is a decline stored with the key, any other 4xx except 408, 409, 425 and
// 429 is a refusal of the request itself. An indeterminate outcome is everything else: a
// timeout, a refused, reset or dropped connection (EOF), a 5xx (a gateway's 502 or 504 may
// hide a committed charge), 409 (the first attempt still running), 408, 425, 429, a 201 whose
// body was cut off, the caller's context ending. The charge may or may not have happened, and
// only the provider knows: asking again with the same key is the one safe move, since the
// provider replays the charge if it happened and makes it if not.
//
// # Why not store a 503 on a connection error
//
// Stripe's rocket-rides-atomic, on a connection error to Stripe, finishes the ride's
// idempotency key with a stored 503. That freezes as a failure an outcome that may have been a
// charge: every retry of the ride replays the 503 and never asks Stripe again, while the card
// may well have been charged. The ride has no charge on record and the customer has paid: an
// orphan charge, found only by reconciliation. Callers of this package must keep an
// indeterminate outcome open (the recovery point stays before the charge step) and re-drive
// it with the same key, within the provider's key retention.
//
// # Retries inside net/http
//
// Go's http.Transport itself re-sends a request that carries an Idempotency-Key header when a
// reused keep-alive connection fails before any answer byte arrives. That is safe here for
// the same reason a caller's retry is: the key is the same.
package payclient
