package dedupe

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// checkAfterFn refuses to store a response when fn broke the transaction or returned a
// response the table cannot hold.
func (d *Deduper) checkAfterFn(tx pgx.Tx, resp Response) error {
	switch tx.Conn().PgConn().TxStatus() {
	case 'T':
	case 'E':
		return fmt.Errorf("%w: a statement failed and fn returned no error", ErrTxEnded)
	default:
		return fmt.Errorf("%w: fn committed or rolled back the transaction", ErrTxEnded)
	}
	if resp.Status < 0 || resp.Status > 999 {
		return fmt.Errorf("dedupe: response status %d is outside 0..999", resp.Status)
	}
	if n := resp.Size(); n > d.opts.MaxResponseBytes {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrResponseTooLarge, n, d.opts.MaxResponseBytes)
	}
	return nil
}

func (d *Deduper) storeArgs(req Request, resp Response) ([]any, error) {
	headers, body, err := d.responseArgs(req, resp)
	if err != nil {
		return nil, err
	}
	return []any{req.Scope, req.Key, int32(resp.Status), headers, body}, nil
}

// responseArgs returns resp's headers and body as the statements that store a response take
// them: the headers as JSON text, or nil (SQL NULL) when there are none, and the body sealed
// by the BodyCodec, never nil.
func (d *Deduper) responseArgs(req Request, resp Response) (headers any, body []byte, err error) {
	if len(resp.Header) > 0 {
		// Encoded here, as a string for the statement's $4::jsonb, so that no query mode
		// depends on the server describing the parameter (see queries.store).
		b, err := json.Marshal(resp.Header)
		if err != nil {
			return nil, nil, fmt.Errorf("dedupe: encode headers: %w", err)
		}
		headers = string(b)
	}
	body = resp.Body
	if d.opts.BodyCodec != nil {
		if body, err = d.opts.BodyCodec.Seal(req.Scope, req.Key, body); err != nil {
			return nil, nil, fmt.Errorf("%w: seal: %w", ErrBodyCodec, err)
		}
	}
	if body == nil {
		body = []byte{}
	}
	return headers, body, nil
}

func (d *Deduper) queueStore(b *pgx.Batch, req Request, resp Response) error {
	args, err := d.storeArgs(req, resp)
	if err != nil {
		return err
	}
	b.Queue(d.q.store, args...).Exec(checkStored)
	return nil
}

// checkStored is the store statement's result check (a package-level func, so queuing it
// allocates no closure).
func checkStored(tag pgconn.CommandTag) error {
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("dedupe: claimed row vanished before its response was stored")
	}
	return nil
}
