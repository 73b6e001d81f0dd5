package paysvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgonce/pgonce/dedupe/dedupehttp"
)

// ChargeRequest is the body of POST /charges.
type ChargeRequest struct {
	// Amount in minor units (cents), 1 to MaxAmount.
	Amount int64 `json:"amount"`
	// Currency is a lower-case ISO 4217 code ("usd").
	Currency string `json:"currency"`
	// Card is a card token, "tok_" and up to 60 more bytes.
	Card string `json:"card"`
	// Reference is the caller's reference for the charge (its order), 1 to 128 bytes.
	Reference string `json:"reference"`
}

// Charge is the body of a 201 answer to POST /charges, and an item of GET /charges.
type Charge struct {
	ID        string    `json:"id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	Reference string    `json:"reference"`
	Status    string    `json:"status"` // always StatusSucceeded
	CreatedAt time.Time `json:"created_at"`
}

// Decline is the body of a 402 answer to POST /charges: a definite refusal, stored with the
// key and replayed to every retry, so a retry never turns a decline into a charge.
type Decline struct {
	// Error is always ErrorCardDeclined.
	Error string `json:"error"`
	// DeclineCode says why: DeclineGeneric or DeclineInsufficientFunds.
	DeclineCode string `json:"decline_code"`
	Message     string `json:"message"`
	// ID names the decline ("dc_..."), a row of the declines table.
	ID        string `json:"id"`
	Reference string `json:"reference"`
}

// Values of the API.
const (
	StatusSucceeded          = "succeeded"
	ErrorCardDeclined        = "card_declined"
	DeclineGeneric           = "generic_decline"
	DeclineInsufficientFunds = "insufficient_funds"
	// MaxAmount bounds one charge (Stripe's eight digits).
	MaxAmount = 99_999_999
)

// Test cards: any other "tok_" token is charged unless Faults.Decline picks its key.
const (
	CardOK                = "tok_visa"
	CardDeclined          = "tok_chargeDeclined"                  // always 402 generic_decline
	CardInsufficientFunds = "tok_chargeDeclinedInsufficientFunds" // always 402 insufficient_funds
)

// SQL of the charge route. Tagged for pg_stat_statements and logs; "payments:" rather than
// "pgonce:" because these are the example's statements, not the toolkit's.
const (
	sqlInsertCharge = `/* payments:insert_charge */ INSERT INTO charges (id, amount, currency, card, reference, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`
	sqlInsertDecline = `/* payments:insert_decline */ INSERT INTO declines (id, amount, currency, card, reference, decline_code, idempotency_key)
VALUES ($1, $2, $3, $4, $5, $6, $7)`
	sqlListCharges = `/* payments:list_charges */ SELECT id, amount, currency, reference, created_at
FROM charges WHERE reference = $1 ORDER BY created_at, id`
)

func (in ChargeRequest) validate() error {
	switch {
	case in.Amount < 1 || in.Amount > MaxAmount:
		return fmt.Errorf("amount must be 1 to %d (minor units)", MaxAmount)
	case len(in.Currency) != 3 || strings.Trim(in.Currency, "abcdefghijklmnopqrstuvwxyz") != "":
		return errors.New(`currency must be a lower-case ISO 4217 code such as "usd"`)
	case !strings.HasPrefix(in.Card, "tok_") || len(in.Card) > 64 || !storable(in.Card):
		return errors.New(`card must be a token: "tok_" and up to 60 more bytes`)
	case in.Reference == "" || len(in.Reference) > 128 || !storable(in.Reference):
		return errors.New("reference must be 1 to 128 bytes of text")
	}
	return nil
}

// storable reports whether PostgreSQL accepts s as text: valid UTF-8 without NUL.
func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.Decode(new(json.RawMessage)) != io.EOF {
		return errors.New("body must hold one JSON object")
	}
	return nil
}

// createCharge runs inside the idempotency transaction: the charge (or decline) row, the key
// and the stored answer commit together, so a key moves money at most once, and the answer a
// retry replays names the very charge that was made.
func (s *Service) createCharge(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tx, _ := dedupehttp.Tx(ctx) // always present: the route requires a key
	key, _ := dedupehttp.Key(ctx)
	var in ChargeRequest
	if err := decodeStrict(r.Body, &in); err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidCharge, "Invalid charge", err.Error())
		return
	}
	if err := in.validate(); err != nil {
		problem(w, http.StatusBadRequest, ProblemInvalidCharge, "Invalid charge", err.Error())
		return
	}
	a := arrivalFrom(ctx)
	if code := declineCode(in.Card, a.d.Decline); code != "" {
		d := Decline{Error: ErrorCardDeclined, DeclineCode: code, Message: "Your card was declined.",
			ID: newID("dc_"), Reference: in.Reference}
		if _, err := tx.Exec(ctx, sqlInsertDecline, d.ID, in.Amount, in.Currency, in.Card, in.Reference, code, key); err != nil {
			s.internal(w, r, "insert decline", err)
			return
		}
		a.first.Store(true)
		writeJSON(w, http.StatusPaymentRequired, d)
		return
	}
	c := Charge{ID: newID("ch_"), Amount: in.Amount, Currency: in.Currency, Reference: in.Reference, Status: StatusSucceeded}
	if err := tx.QueryRow(ctx, sqlInsertCharge, c.ID, in.Amount, in.Currency, in.Card, in.Reference, key).Scan(&c.CreatedAt); err != nil {
		s.internal(w, r, "insert charge", err)
		return
	}
	c.CreatedAt = c.CreatedAt.UTC()
	a.first.Store(true)
	writeJSON(w, http.StatusCreated, c)
}

// declineCode is the decline code for card, or "" when the charge goes through.
func declineCode(card string, declineByFault bool) string {
	switch {
	case card == CardInsufficientFunds:
		return DeclineInsufficientFunds
	case card == CardDeclined, declineByFault:
		return DeclineGeneric
	}
	return ""
}

// internal answers 500: the idempotency layer rolls the transaction back and frees the key.
func (s *Service) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.ErrorContext(r.Context(), what, "error", err)
	problem(w, http.StatusInternalServerError, ProblemInternal, "Internal error", "")
}

// listCharges answers GET /charges?reference=R with {"data": [charges made for R]}.
func (s *Service) listCharges(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("reference")
	if ref == "" || !storable(ref) {
		problem(w, http.StatusBadRequest, ProblemInvalidQuery, "reference required", "GET /charges?reference=...")
		return
	}
	cs, err := ListCharges(r.Context(), s.db, ref)
	if err != nil {
		s.internal(w, r, "list charges", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Data []Charge `json:"data"`
	}{cs})
}
