package dedupe_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"

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
