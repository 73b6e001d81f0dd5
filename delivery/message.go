package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgonce/pgonce/dedupe"
)

// Message is one HTTP request to deliver at least once.
type Message struct {
	// URL is the absolute http or https URL the request goes to. Required.
	URL string
	// Key is sent as the Idempotency-Key header, the same on every attempt and re-drive, so
	// that a receiver that deduplicates on it (dedupehttp) applies the message once. It must
	// be unique per message (derive it from the business row, say "order-42-confirmed"):
	// 1 to 255 bytes of printable ASCII. Required. Keys of visible ASCII without quotes or
	// backslashes are sent bare (as Stripe and most receivers expect); others as a quoted
	// Structured Field string (the IETF draft's form), which dedupehttp also reads.
	Key string
	// Body is the request body, sent as is.
	Body []byte
	// Header holds extra request headers (Content-Type, say). It may not set
	// Idempotency-Key, Content-Length, Host or Transfer-Encoding.
	Header http.Header
	// OrderingKey, when set, delivers this message only after every message enqueued
	// earlier with the same ordering key is delivered or dead (see Client). Messages whose
	// transactions commit concurrently have no order between them: serialise them (a row
	// lock on the business row) when order matters.
	OrderingKey string
}

// args is a message as River stores it (the job's args, jsonb).
type args struct {
	URL         string      `json:"url"`
	Key         string      `json:"key"`
	Body        []byte      `json:"body,omitempty"`
	Header      http.Header `json:"header,omitempty"`
	OrderingKey string      `json:"ordering_key,omitempty"`
}

// Kind is the River job kind of deliveries.
func (args) Kind() string { return jobKind }

// EnqueueTx inserts msg in the caller's transaction tx: the message exists, and will be
// delivered, exactly when tx commits. This is the transactional outbox: enqueue in the same
// transaction as the business write that the message announces. Invalid input is refused
// (ErrInvalidMessage) before anything is inserted. EnqueueTx works without Start (a process
// may only enqueue); a started Client anywhere forwards the message to its workers.
//
// Cost: one INSERT of a narrow row (an id and the message as JSON, one index), no NOTIFY. A
// started Client's forwarder then moves committed messages into River's job table in
// batches of up to 1000, every ForwardInterval when idle; see the README for the measured
// overhead on a business transaction and the latency this adds.
func (c *Client) EnqueueTx(ctx context.Context, tx pgx.Tx, msg Message) error {
	if err := msg.validate(); err != nil {
		return err
	}
	encoded, err := json.Marshal(args(msg))
	if err != nil {
		return fmt.Errorf("delivery: enqueue %q: %w", msg.Key, err)
	}
	// As a string: a []byte would go as bytea in the exec and simple-protocol query modes.
	if _, err := tx.Exec(ctx, c.sql.outboxInsert, string(encoded)); err != nil {
		return fmt.Errorf("delivery: enqueue %q: %w", msg.Key, err)
	}
	return nil
}

// forbiddenHeaders are set by the worker or the transport, never by a message.
var forbiddenHeaders = map[string]bool{
	"Idempotency-Key": true, "Content-Length": true, "Host": true, "Transfer-Encoding": true,
}

func (m *Message) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMessage}, a...)...)
	}
	u, err := url.Parse(m.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("URL %q is not an absolute http(s) URL", m.URL)
	}
	if m.Key == "" || len(m.Key) > dedupe.MaxKeyLen {
		return bad("Key must be 1 to %d bytes, is %d", dedupe.MaxKeyLen, len(m.Key))
	}
	for i := 0; i < len(m.Key); i++ {
		if c := m.Key[i]; c < 0x20 || c > 0x7e {
			return bad("Key has byte 0x%02x at %d: only printable ASCII", c, i)
		}
	}
	if len(m.OrderingKey) > 1024 || strings.ContainsRune(m.OrderingKey, 0) {
		return bad("OrderingKey is over 1024 bytes or has a NUL byte")
	}
	for name, values := range m.Header {
		if !validToken(name) {
			return bad("header name %q", name)
		}
		if forbiddenHeaders[textproto.CanonicalMIMEHeaderKey(name)] {
			return bad("header %s is set by the worker", name)
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") {
				return bad("header %s has a CR, LF or NUL", name)
			}
		}
	}
	return nil
}

// keyHeader is the Idempotency-Key header value for key: bare when it is a token-like run
// of visible ASCII, else an RFC 8941 sf-string.
func keyHeader(key string) string {
	bare := true
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			bare = false
			break
		}
	}
	if bare {
		return key
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(key); i++ {
		if key[i] == '"' || key[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(key[i])
	}
	b.WriteByte('"')
	return b.String()
}
