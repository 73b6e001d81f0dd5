package redisguard

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/pgonce/pgonce/dedupe"
)

// A guard key holds one of two values:
//
//	pending:   'P' owner                       a request saw the key first and is running
//	committed: 'C' owner entry                 the request committed; entry as below
//
// entry = version(1) uvarint(len fp) fp flag(1) [response], flag 1 when a response follows:
// response = uvarint(status) uvarint(#headers) {uvarint(len name) name uvarint(#values)
// {uvarint(len v) v}} body (the rest). Everything read back is checked: a value that does not
// decode is treated as "committed, nothing usable cached" and the request asks PostgreSQL.

const (
	statePending   = 'P'
	stateCommitted = 'C'
	entryVersion   = 1
)

var errBadEntry = errors.New("redisguard: undecodable guard entry")

// encodeCommitted builds the committed value; a nil resp records the commit without a
// response (too large to cache).
func encodeCommitted(owner string, fp []byte, resp *dedupe.Response) []byte {
	b := make([]byte, 0, 64+len(fp)+responseSize(resp))
	b = append(b, stateCommitted)
	b = append(b, owner...)
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, uint64(len(fp)))
	b = append(b, fp...)
	if resp == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(resp.Status))
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	slices.Sort(names) // deterministic bytes for equal responses
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		vs := resp.Header[k]
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return append(b, resp.Body...)
}

func responseSize(resp *dedupe.Response) int {
	if resp == nil {
		return 0
	}
	n := len(resp.Body)
	for k, vs := range resp.Header {
		n += len(k) + 2*binary.MaxVarintLen32
		for _, v := range vs {
			n += len(v) + binary.MaxVarintLen32
		}
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeCommitted parses a committed value after its state byte and owner. It returns the
// fingerprint and, when one was cached, the response.
func decodeCommitted(v []byte) (fp []byte, resp *dedupe.Response, err error) {
	d := decoder{b: v}
	if d.byte() != entryVersion {
		return nil, nil, errBadEntry
	}
	fp = d.bytes()
	flag := d.byte()
	if d.bad || flag > 1 {
		return nil, nil, errBadEntry
	}
	if flag == 0 {
		if len(d.b) != 0 {
			return nil, nil, errBadEntry
		}
		return fp, nil, nil
	}
	r := &dedupe.Response{}
	status := d.uvarint()
	if status > 999 {
		return nil, nil, errBadEntry
	}
	r.Status = int(status)
	nh := d.uvarint()
	if nh > uint64(len(d.b)) {
		return nil, nil, errBadEntry
	}
	if nh > 0 {
		r.Header = make(map[string][]string, nh)
	}
	for range nh {
		k := string(d.bytes())
		nv := d.uvarint()
		if d.bad || nv > uint64(len(d.b)) {
			return nil, nil, errBadEntry
		}
		vs := make([]string, 0, nv)
		for range nv {
			vs = append(vs, string(d.bytes()))
		}
		r.Header[k] = vs
	}
	if d.bad {
		return nil, nil, errBadEntry
	}
	r.Body = slices.Clone(d.b)
	return fp, r, nil
}

// decoder reads from b and sets bad instead of panicking on short input.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
