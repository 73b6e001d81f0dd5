package ordersvc

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/examples/payments/payclient"
	"github.com/pgonce/pgonce/flow"
	"github.com/pgonce/pgonce/pessimistic"
)

// CheckoutFlow is the name of the paid checkout flow in flow_requests.
const CheckoutFlow = "orders.checkout"

// ProblemPaymentDeclined is the stored answer (402) to an order whose card was declined.
const ProblemPaymentDeclined = "https://pgonce.dev/problems/orders/payment-declined"

// maxOrderBody bounds the body of POST /orders.
const maxOrderBody = 64 << 10

// reserved is the output of the reserve step.
type reserved struct {
	OrderID int64 `json:"order_id"`
	Amount  int64 `json:"amount"`
}

// charged is the output of the charge step: a charge id, or a definite refusal.
type charged struct {
	ChargeID string `json:"charge_id,omitempty"`
	Declined string `json:"declined,omitempty"` // decline code, when the card was refused
}

// checkoutFlow is POST /orders with a payment provider, as three steps under the request's
// idempotency key:
//
//  1. reserve (local): lock the product, take the stock, insert the order as reserved;
//  2. charge (foreign): charge the provider with the request's outbound key, no transaction
//     open; an unknown outcome leaves the request to be re-driven with the same key;
//  3. confirm (local): confirm the order and enqueue the order-confirmed notification, or,
//     after a decline, give the stock back and answer 402; the answer is stored.
func (s *Service) checkoutFlow() flow.Flow {
	return flow.Flow{Name: CheckoutFlow, Steps: []flow.Step{
		flow.Local("reserve", s.reserve),
		flow.Foreign("charge", s.charge),
		flow.Local("confirm", s.confirm),
	}}
}

func (s *Service) reserve(ctx context.Context, tx pgx.Tx, st *flow.State) ([]byte, error) {
	var in OrderRequest
	if err := json.Unmarshal(st.Input, &in); err != nil {
		return nil, err // validated before the request was claimed: cannot happen
	}
	var stock int
	var price int64
	err := pessimistic.RowLock{}.Row(ctx, tx, pgx.Identifier{"products"}, "sku", in.SKU, []string{"stock", "price_cents"}, &stock, &price)
	switch {
	case errors.Is(err, pessimistic.ErrNotFound):
		return nil, flow.Finish(problemResponse(http.StatusUnprocessableEntity, ProblemUnknownSKU, "Unknown product", fmt.Sprintf("No product with sku %q.", in.SKU)))
	case err != nil:
		return nil, err
	case stock < in.Quantity:
		return nil, flow.Finish(problemResponse(http.StatusConflict, ProblemOutOfStock, "Out of stock",
			(&outOfStockError{sku: in.SKU, have: stock, want: in.Quantity}).Error()))
	}
	if _, err := tx.Exec(ctx, `UPDATE products SET stock = stock - $2, version = version + 1, updated_at = now() WHERE sku = $1`,
		in.SKU, in.Quantity); err != nil {
		return nil, err
	}
	out := reserved{Amount: price * int64(in.Quantity)}
	err = tx.QueryRow(ctx, `INSERT INTO orders (customer_id, sku, quantity, idempotency_key, status, amount_cents)
		VALUES ($1, $2, $3, $4, 'reserved', $5) RETURNING id`,
		in.CustomerID, in.SKU, in.Quantity, st.Key, out.Amount).Scan(&out.OrderID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// OrderReference is the payment reference of an order: what the provider's charges and the
// notifications carry, and what the demo's checker joins on.
func OrderReference(orderID int64) string { return "order-" + strconv.FormatInt(orderID, 10) }

func (s *Service) charge(ctx context.Context, st *flow.State) ([]byte, error) {
	var in OrderRequest
	var res reserved
	out, _ := st.Output("reserve")
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(st.Input, &in); err != nil {
		return nil, err
	}
	c, err := s.payments.Charge(ctx, st.OutboundKey("charge"), payclient.ChargeRequest{
		Amount: res.Amount, Currency: "usd", Card: cardOrDefault(in.Card), Reference: OrderReference(res.OrderID),
	})
	var declined *payclient.DeclinedError
	switch {
	case errors.As(err, &declined):
		return json.Marshal(charged{Declined: cmp.Or(declined.Code, "card_declined")})
	case errors.Is(err, payclient.ErrRejected):
		// Definite too: the provider refused the request itself. Treated as a decline so the
		// stock goes back; the detail is in the log.
		s.log.ErrorContext(ctx, "charge rejected", "error", err)
		return json.Marshal(charged{Declined: "rejected"})
	case err != nil:
		return nil, err // unknown outcome: re-driven with the same key
	}
	return json.Marshal(charged{ChargeID: c.ID})
}

func (s *Service) confirm(ctx context.Context, tx pgx.Tx, st *flow.State) ([]byte, error) {
	var res reserved
	var ch charged
	r, _ := st.Output("reserve")
	c, _ := st.Output("charge")
	if err := json.Unmarshal(r, &res); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(c, &ch); err != nil {
		return nil, err
	}
	var o Order
	if ch.Declined != "" {
		err := tx.QueryRow(ctx, `UPDATE orders SET status = 'declined' WHERE id = $1
			RETURNING id, customer_id, sku, quantity, status, created_at`, res.OrderID).
			Scan(&o.ID, &o.CustomerID, &o.SKU, &o.Quantity, &o.Status, &o.CreatedAt)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `UPDATE products SET stock = stock + $2, version = version + 1, updated_at = now() WHERE sku = $1`,
			o.SKU, o.Quantity); err != nil {
			return nil, err
		}
		return nil, flow.Finish(problemResponse(http.StatusPaymentRequired, ProblemPaymentDeclined, "Payment declined",
			fmt.Sprintf("The card was declined (%s); nothing was charged and the order %d was not placed.", ch.Declined, o.ID)))
	}
	err := tx.QueryRow(ctx, `UPDATE orders SET status = 'confirmed', charge_id = $2 WHERE id = $1
		RETURNING id, customer_id, sku, quantity, status, created_at`, res.OrderID, ch.ChargeID).
		Scan(&o.ID, &o.CustomerID, &o.SKU, &o.Quantity, &o.Status, &o.CreatedAt)
	if err != nil {
		return nil, err
	}
	o.CreatedAt = o.CreatedAt.UTC()
	if s.notify != nil {
		note, err := json.Marshal(map[string]any{"order_ref": OrderReference(o.ID), "event": "order.confirmed", "charge_id": ch.ChargeID, "sku": o.SKU, "quantity": o.Quantity})
		if err != nil {
			return nil, err
		}
		// The outbox: the message commits with the confirmation, or neither does. Its key is
		// derived like the charge's, so the receiver dedupes every redelivery.
		if err := s.notify(ctx, tx, st.OutboundKey("notify"), note); err != nil {
			return nil, err
		}
	}
	body, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	return nil, flow.Finish(dedupe.Response{Status: http.StatusCreated, Header: map[string][]string{
		"Content-Type": {"application/json"}, "Location": {"/orders/" + strconv.FormatInt(o.ID, 10)},
	}, Body: append(body, '\n')})
}

// checkout serves POST /orders when a payment provider is configured.
func (s *Service) checkout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key, err := dedupehttp.ParseKey(r.Header)
	if err != nil {
		typ := dedupehttp.ProblemKeyMalformed
		if r.Header.Get(dedupehttp.HeaderKey) == "" {
			typ = dedupehttp.ProblemKeyMissing
		}
		problem(w, http.StatusBadRequest, dedupehttp.DefaultProblemTypeBase+typ, "Idempotency-Key required", err.Error())
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOrderBody+1))
	switch {
	case err != nil:
		problem(w, http.StatusBadRequest, dedupehttp.DefaultProblemTypeBase+dedupehttp.ProblemBodyUnreadable, "Body unreadable", err.Error())
		return
	case len(body) > maxOrderBody:
		problem(w, http.StatusRequestEntityTooLarge, dedupehttp.DefaultProblemTypeBase+dedupehttp.ProblemRequestTooLarge, "Request too large", "")
		return
	}
	in, err := decodeOrder(body)
	if err != nil { // refused before the key is claimed: the same body is refused again
		problem(w, http.StatusBadRequest, ProblemInvalidOrder, "Invalid order", err.Error())
		return
	}
	norm, _ := json.Marshal(in) // the steps read the decoded order
	req := dedupe.Request{Scope: "POST /orders", Key: key, Fingerprint: dedupe.Fingerprint(r.Method, r.URL.Path, body)}
	res, err := s.flows.Run(ctx, CheckoutFlow, req, norm)
	outcome := "first"
	switch {
	case errors.Is(err, dedupe.ErrFingerprintMismatch):
		outcome = "mismatch"
		problem(w, http.StatusUnprocessableEntity, dedupehttp.DefaultProblemTypeBase+dedupehttp.ProblemKeyMismatch, "Idempotency-Key reused", "The key was used with another request.")
	case errors.Is(err, dedupe.ErrInProgress), errors.Is(err, flow.ErrLeaseLost):
		outcome = "in_progress"
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusConflict, dedupehttp.DefaultProblemTypeBase+dedupehttp.ProblemKeyInProgress, "Request in progress", "Retry with the same key.")
	case errors.Is(err, flow.ErrUnfinished):
		// The charge's outcome is not known yet: nothing is stored, the client retries
		// with the same key and the request resumes where it stopped.
		outcome = "unfinished"
		s.log.WarnContext(ctx, "checkout unfinished", "error", err)
		w.Header().Set("Retry-After", "1")
		problem(w, http.StatusServiceUnavailable, dedupehttp.DefaultProblemTypeBase+dedupehttp.ProblemUnavailable, "Try again", "The order is being processed; retry with the same key.")
	case err != nil:
		outcome = "error"
		s.log.ErrorContext(ctx, "checkout", "error", err)
		problem(w, http.StatusInternalServerError, "about:blank", "Internal error", "")
	default:
		if res.Replayed() {
			outcome = "replayed"
			w.Header().Set(dedupehttp.HeaderReplayed, "true")
		}
		for k, vs := range res.Response.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(res.Response.Status)
		_, _ = w.Write(res.Response.Body)
	}
	s.log.InfoContext(ctx, "checkout", "outcome", outcome, "key_hash", dedupe.KeyHash(key))
}

func decodeOrder(body []byte) (OrderRequest, error) {
	var in OrderRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, err
	}
	return in, in.validate()
}

// problemResponse is a stored problem+json answer.
func problemResponse(status int, typ, title, detail string) dedupe.Response {
	body, _ := json.Marshal(dedupehttp.Problem{Type: typ, Title: title, Status: status, Detail: detail})
	return dedupe.Response{Status: status, Header: map[string][]string{"Content-Type": {"application/problem+json"}}, Body: body}
}

func cardOrDefault(card string) string {
	if card == "" {
		return "tok_visa"
	}
	return card
}
