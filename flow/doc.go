// Package flow makes a request exactly-once when its effects reach beyond PostgreSQL:
// charging a card at a payment provider, sending an email, calling a partner's API. The
// request runs as named steps under one idempotency key, and its progress lives with the key,
// in PostgreSQL, so that a retry, or the completer after a crash, resumes it where it stopped:
//
//	r, err := flow.New(pool, []flow.Flow{{Name: "orders.create", Steps: []flow.Step{
//		flow.Local("reserve", reserveStock),   // tx: lock the product, decrement, insert the order
//		flow.Foreign("charge", chargeProvider), // no tx: POST /charges with st.OutboundKey("charge")
//		flow.Local("confirm", confirmOrder),   // tx: confirm (or release the stock), enqueue the
//		                                       // notification, return flow.Finish(response)
//	}}}, nil)
//	res, err := r.Run(ctx, "orders.create", dedupe.Request{Scope: "orders.create", Key: key, Fingerprint: fp}, body)
//
// The promises, and what keeps each one:
//
//   - Each local step's writes, its output and the new recovery point commit together, in
//     one short transaction: a step is done or not at all.
//   - A foreign step calls out with no transaction open, sending State.OutboundKey: derived
//     from a random seed stored with the request, it is the same on every re-drive of this
//     request and never another request's, so the other service (which dedupes on it, as
//     Stripe does and as dedupehttp does) acts once. Its outcome is recorded afterwards in a
//     short transaction; if the commit's acknowledgement is lost, the runner reads its own
//     record back instead of calling again.
//   - An outcome the caller cannot know (a timeout, a dropped connection, a 5xx) never
//     becomes a stored answer: the request stays unfinished (ErrUnfinished) at its recovery
//     point, its lease is given back, and a retry makes the same call with the same key. A
//     definite outcome (the card was declined) is returned by the step: as an output for the
//     next step to act on (release the stock), or as Finish(response) to end the request.
//   - The last step's response is stored and replayed exactly as dedupe.Do's: byte for byte,
//     dedupe.ErrFingerprintMismatch for a key reused with another request, dedupe.ErrInProgress
//     while another process holds the request (after waiting up to Options.LockWait).
//   - The holder keeps a lease on the request (Options.Lease), renewed by a heartbeat; a
//     holder that dies is taken over, with a new fencing token, by the next retry or by the
//     completer (Runner.Complete, Runner.RunCompleter) once the lease runs out. Every change
//     a holder makes to the request names its token, so a holder that was paused past its
//     lease changes nothing when it wakes (ErrLeaseLost) and its open transaction rolls back.
//   - Re-driving a call is safe only while the other service remembers the key: past
//     Options.RedriveWindow a request whose holder went away is not re-driven but moved to
//     reconciliation (ErrReconcile, Options.OnReconcile, ListReconcile), for a person to
//     Resolve with an answer or Redrive.
//
// When to use which: dedupe.Do when every effect of the request is a write to this database
// (it is the one-local-step case, at the cost of the key row alone); flow when the request
// calls another service, or must survive the process dying between two effects. A flow costs
// one transaction per step plus the claim, and rows in flow_requests and flow_steps (created
// by the migrations package, version 3).
//
// Every statement is short and keeps no session state, so a Runner works in every pgx query
// mode and through PgBouncer in transaction pooling.
package flow
