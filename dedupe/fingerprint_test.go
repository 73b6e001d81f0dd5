package dedupe_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pgonce/pgonce/dedupe"
)

func TestFingerprintSameRequest(t *testing.T) {
	for name, pair := range map[string][2]string{
		"member order":       {`{"a":1,"b":{"c":[1,2],"d":null}}`, `{"b":{"d":null,"c":[1,2]},"a":1}`},
		"whitespace":         {`{"a": [1, 2], "b": true}`, "\n{ \"b\":true,\t\"a\":[1,2] }\r\n"},
		"string escapes":     {`{"k":"A\u00e9\n\/"}`, `{"k":"Aé\n/"}`},
		"nested member sort": {`[{"z":1,"y":2}]`, `[{"y":2,"z":1}]`},
		"unicode keys":       {`{"é":1,"e":2}`, `{"e":2,"é":1}`},
	} {
		a := dedupe.Fingerprint("POST", "/orders", []byte(pair[0]))
		b := dedupe.Fingerprint("POST", "/orders", []byte(pair[1]))
		assert.Equal(t, a, b, name)
		assert.Len(t, a, 32, name)
	}
}

func TestFingerprintDifferentRequest(t *testing.T) {
	base := dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1,"sku":"x"}`))
	for name, fp := range map[string][]byte{
		"value":             dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":2,"sku":"x"}`)),
		"number spelling":   dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1.0,"sku":"x"}`)),
		"type":              dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":"1","sku":"x"}`)),
		"extra member":      dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1,"sku":"x","z":null}`)),
		"duplicate member":  dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1,"qty":1,"sku":"x"}`)),
		"method":            dedupe.Fingerprint("PATCH", "/orders", []byte(`{"qty":1,"sku":"x"}`)),
		"path":              dedupe.Fingerprint("POST", "/orders/", []byte(`{"qty":1,"sku":"x"}`)),
		"no body":           dedupe.Fingerprint("POST", "/orders", nil),
		"trailing garbage":  dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1,"sku":"x"} x`)),
		"array order":       dedupe.Fingerprint("POST", "/orders", []byte(`[{"qty":1,"sku":"x"}]`)),
		"key case":          dedupe.Fingerprint("POST", "/orders", []byte(`{"Qty":1,"sku":"x"}`)),
		"string whitespace": dedupe.Fingerprint("POST", "/orders", []byte(`{"qty":1,"sku":"x "}`)),
	} {
		assert.NotEqual(t, base, fp, name)
	}
	// Fields are length-prefixed: shifting bytes between method and path changes the hash.
	assert.NotEqual(t, dedupe.Fingerprint("POS", "T/orders", nil), dedupe.Fingerprint("POST", "/orders", nil))
	// Duplicate members keep their order: last-wins parsers would read these differently.
	assert.NotEqual(t,
		dedupe.Fingerprint("POST", "/", []byte(`{"a":1,"a":2}`)),
		dedupe.Fingerprint("POST", "/", []byte(`{"a":2,"a":1}`)))
}

// Bodies that a Go server decodes differently get different fingerprints. encoding/json
// matches member names to fields case-insensitively (Unicode simple folding) and the last
// match wins, so members whose names fold alike must keep their order; members that do not
// fold alike may still be reordered freely.
func TestFingerprintFollowsCaseInsensitiveDecoding(t *testing.T) {
	type order struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	decode := func(body string) order {
		var o order
		require.NoError(t, json.Unmarshal([]byte(body), &o))
		return o
	}
	for name, pair := range map[string][2]string{
		"ascii case":  {`{"sku":"S","quantity":1,"Quantity":7}`, `{"sku":"S","Quantity":7,"quantity":1}`},
		"all upper":   {`{"QUANTITY":2,"quantity":3}`, `{"quantity":3,"QUANTITY":2}`},
		"kelvin sign": {`{"s\u212au":"A","sku":"B"}`, `{"sku":"B","s\u212au":"A"}`},
		"long s":      {`{"\u017fku":"A","SKU":"B"}`, `{"SKU":"B","\u017fku":"A"}`},
	} {
		require.NotEqual(t, decode(pair[0]), decode(pair[1]), "%s: the bodies decode differently", name)
		assert.NotEqual(t,
			dedupe.Fingerprint("POST", "/orders", []byte(pair[0])),
			dedupe.Fingerprint("POST", "/orders", []byte(pair[1])), name)
	}
	// Names that differ beyond case still sort: the order of unrelated members is free.
	same := [2]string{`{"Quantity":7,"sku":"S"}`, `{"sku":"S","Quantity":7}`}
	require.Equal(t, decode(same[0]), decode(same[1]))
	assert.Equal(t,
		dedupe.Fingerprint("POST", "/orders", []byte(same[0])),
		dedupe.Fingerprint("POST", "/orders", []byte(same[1])))
}

func TestFingerprintNonJSONBodies(t *testing.T) {
	// Invalid UTF-8 must not collapse to U+FFFD: two different invalid bodies stay different.
	assert.NotEqual(t,
		dedupe.Fingerprint("POST", "/", []byte("\"\xff\"")),
		dedupe.Fingerprint("POST", "/", []byte("\"\xfe\"")))
	// Raw bodies hash as bytes, and a JSON body never collides with its raw twin.
	form := []byte("a=1&b=2")
	assert.Equal(t, dedupe.Fingerprint("POST", "/", form), dedupe.Fingerprint("POST", "/", bytes.Clone(form)))
	assert.NotEqual(t, dedupe.Fingerprint("POST", "/", []byte("a=1&b=2")), dedupe.Fingerprint("POST", "/", []byte("b=2&a=1")))
	assert.NotEqual(t, dedupe.Fingerprint("POST", "/", []byte(`{"a":1}`)), dedupe.Fingerprint("POST", "/", []byte(`{"a":1`)))
}

func TestValidateLimits(t *testing.T) {
	assert.NoError(t, dedupe.ValidateKey("k"))
	assert.NoError(t, dedupe.ValidateKey(string(bytes.Repeat([]byte("k"), dedupe.MaxKeyLen))))
	assert.ErrorIs(t, dedupe.ValidateKey(string(bytes.Repeat([]byte("k"), dedupe.MaxKeyLen+1))), dedupe.ErrInvalidKey)
	assert.ErrorIs(t, dedupe.ValidateKey(""), dedupe.ErrInvalidKey)
	assert.ErrorIs(t, dedupe.ValidateScope("a\x00b"), dedupe.ErrInvalidScope)
	assert.ErrorContains(t, dedupe.ValidateKey("\xc3"), "not valid UTF-8")
}
