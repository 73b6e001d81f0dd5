package ordersvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
	"github.com/pgonce/pgonce/pessimistic"
)

// Problem types of the service's own refusals (RFC 9457). Like every 4xx answer to
// POST /orders, they are committed with the key and replayed to retries.
const (
	ProblemInvalidOrder = "https://pgonce.dev/problems/orders/invalid-order" // 400
	ProblemUnknownSKU   = "https://pgonce.dev/problems/orders/unknown-sku"   // 422
	ProblemOutOfStock   = "https://pgonce.dev/problems/orders/out-of-stock"  // 409
	ProblemNotFound     = "https://pgonce.dev/problems/orders/not-found"     // 404
)

// Order is the JSON form of an order.
type Order struct {
	ID         int64     `json:"id"`
	CustomerID string    `json:"customer_id"`
	SKU        string    `json:"sku"`
	Quantity   int       `json:"quantity"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
}

// OrderRequest is the body of POST /orders.
type OrderRequest struct {
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	// Card is the payment token charged in the paid checkout (Config.Payments); default
	// "tok_visa". Ignored without a payment provider.
	Card string `json:"card,omitempty"`
}

// MaxQuantity bounds one order.
const MaxQuantity = 1000

func (o OrderRequest) validate() error {
	switch {
	case o.CustomerID == "" || len(o.CustomerID) > 128:
		return errors.New("customer_id must be 1 to 128 bytes")
	case !storable(o.CustomerID):
		return errors.New("customer_id must not contain a NUL character")
	case o.SKU == "" || len(o.SKU) > 128:
		return errors.New("sku must be 1 to 128 bytes")
	case !storable(o.SKU):
		return errors.New("sku must not contain a NUL character")
	case o.Quantity < 1 || o.Quantity > MaxQuantity:
		return fmt.Errorf("quantity must be 1 to %d", MaxQuantity)
	case len(o.Card) > 64 || !storable(o.Card):
		return errors.New("card must be at most 64 bytes, without a NUL character")
	}
	return nil
}

// storable reports whether PostgreSQL accepts s as text: valid UTF-8 without NUL, which no
// text value may hold. encoding/json already turns invalid UTF-8 into U+FFFD, but keeps
// \u0000; a path segment may hold either.
func storable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// createOrder runs inside the idempotency transaction opened by the middleware: the stock
// decrement, the order row, the key and the stored response commit together or not at all.
func (s *Service) createOrder(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tx, _ := dedupehttp.Tx(ctx) // always present: the route requires a key
	var in OrderRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidOrder, "Invalid order", err.Error())
		return
	}
	if err := in.validate(); err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidOrder, "Invalid order", err.Error())
		return
	}
	key, _ := dedupehttp.Key(ctx)

	order, err := placeOrder(ctx, tx, in, key)
	if err == nil && s.after != nil {
		err = s.after(ctx, r, tx, order)
	}
	switch {
	case errors.Is(err, errUnknownSKU):
		problem(w, http.StatusUnprocessableEntity, ProblemUnknownSKU, "Unknown product", fmt.Sprintf("No product with sku %q.", in.SKU))
	case errors.As(err, new(*outOfStockError)):
		problem(w, http.StatusConflict, ProblemOutOfStock, "Out of stock", err.Error())
	case err != nil:
		// A 5xx makes the middleware roll back: no order, no stock change, key free for a retry.
		s.log.ErrorContext(ctx, "create order", "error", err)
		problem(w, http.StatusInternalServerError, "about:blank", "Internal error", "")
	default:
		w.Header().Set("Location", "/orders/"+strconv.FormatInt(order.ID, 10))
		writeJSON(w, http.StatusCreated, order)
	}
}

var errUnknownSKU = errors.New("unknown sku")

type outOfStockError struct {
	sku        string
	have, want int
}

func (e *outOfStockError) Error() string {
	return fmt.Sprintf("%d units of %q left, %d ordered", e.have, e.sku, e.want)
}

// placeOrder takes the stock and writes the order, in tx.
//
// The product row is locked with SELECT ... FOR UPDATE rather than updated optimistically:
// every order for a popular product touches the same row, and under that contention an
// optimistic version check mostly fails and retries, while FOR UPDATE simply queues the
// writers (see the locking benchmarks in README.md). The lock is held until the idempotency
// transaction commits, so the stock check and the decrement cannot be interleaved.
func placeOrder(ctx context.Context, tx pgx.Tx, in OrderRequest, key string) (Order, error) {
	var stock int
	err := pessimistic.RowLock{}.Row(ctx, tx, pgx.Identifier{"products"}, "sku", in.SKU, []string{"stock"}, &stock)
	if errors.Is(err, pessimistic.ErrNotFound) {
		return Order{}, errUnknownSKU
	}
	if err != nil {
		return Order{}, err
	}
	if stock < in.Quantity {
		return Order{}, &outOfStockError{sku: in.SKU, have: stock, want: in.Quantity}
	}
	if _, err := tx.Exec(ctx, `UPDATE products SET stock = stock - $2, version = version + 1, updated_at = now() WHERE sku = $1`,
		in.SKU, in.Quantity); err != nil {
		return Order{}, err
	}
	o := Order{CustomerID: in.CustomerID, SKU: in.SKU, Quantity: in.Quantity}
	err = tx.QueryRow(ctx, `INSERT INTO orders (customer_id, sku, quantity, idempotency_key)
		VALUES ($1, $2, $3, $4) RETURNING id, status, created_at`,
		in.CustomerID, in.SKU, in.Quantity, key).Scan(&o.ID, &o.Status, &o.CreatedAt)
	o.CreatedAt = o.CreatedAt.UTC()
	return o, err
}

func (s *Service) getOrder(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		problem(w, http.StatusNotFound, ProblemNotFound, "No such order", "")
		return
	}
	var o Order
	err = s.pool.QueryRow(r.Context(), `SELECT id, customer_id, sku, quantity, status, created_at FROM orders WHERE id = $1`, id).
		Scan(&o.ID, &o.CustomerID, &o.SKU, &o.Quantity, &o.Status, &o.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		problem(w, http.StatusNotFound, ProblemNotFound, "No such order", "")
	case err != nil:
		s.log.ErrorContext(r.Context(), "get order", "error", err)
		problem(w, http.StatusInternalServerError, "about:blank", "Internal error", "")
	default:
		o.CreatedAt = o.CreatedAt.UTC()
		writeJSON(w, http.StatusOK, o)
	}
}

func problem(w http.ResponseWriter, status int, typ, title, detail string) {
	dedupehttp.WriteProblem(w, dedupehttp.Problem{Type: typ, Title: title, Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
