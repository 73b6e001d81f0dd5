package pessimistic

import (
	"crypto/sha256"
	"encoding/binary"
)

// AdvisoryKey turns a lock name into the 64-bit key of PostgreSQL's advisory lock functions, so that
// every process, in any language, that names a lock the same way takes the same lock.
//
// The algorithm, stable across versions of this package: take the SHA-256 digest of the
// name's bytes (Go strings are used as they are; give UTF-8), keep its first eight bytes,
// and read them as a big-endian two's-complement signed 64-bit integer. In SQL:
//
//	('x' || left(encode(sha256(convert_to(name, 'UTF8')), 'hex'), 16))::bit(64)::bigint
//
// Test vectors:
//
//	AdvisoryKey("")               = -2039914840885289964  (digest e3b0c44298fc1c14…)
//	AdvisoryKey("nightly-report") =  7440995589958059143  (digest 6743ba10a2b2c487…)
//	AdvisoryKey("é")              =  5375421630974772051  (digest 4a99557e4033c353…)
//
// Distinct names collide with probability about n²/2⁶⁵ for n names in use at once; a
// collision makes two locks one (more waiting, never less exclusion). Use the two-int form
// (XactLock2) when you already have small integer ids. No I/O.
func AdvisoryKey(name string) int64 {
	sum := sha256.Sum256([]byte(name))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}
