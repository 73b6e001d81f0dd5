package redisguard

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"sync/atomic"

	"github.com/pgonce/pgonce/dedupe"
)

// key is the guard key of (scope, key): hashed, so any scope and key give a short key with
// no hash tag in it. Scope and key contain no NUL (validated), so the join is unambiguous.
// One allocation: the key itself.
func (g *Guard) key(req dedupe.Request) string {
	var buf [dedupe.MaxScopeLen + 1 + dedupe.MaxKeyLen]byte
	in := append(append(append(buf[:0], req.Scope...), 0), req.Key...)
	sum := sha256.Sum256(in)
	var enc [43]byte // base64url of 32 bytes, unpadded
	base64.RawURLEncoding.Encode(enc[:], sum[:])
	var b strings.Builder
	b.Grow(len(g.opts.Prefix) + len(guardInfix) + len(enc))
	b.WriteString(g.opts.Prefix)
	b.WriteString(guardInfix)
	b.Write(enc[:])
	return b.String()
}

const guardInfix = "guard:"

// ownerLen is the length of an owner token: 16 bytes, base64url without padding.
const ownerLen = 22

// newOwner returns a random owner token (the lease lock's default): 16 bytes from
// crypto/rand, so a lock's token cannot be guessed from another's.
func newOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ownerSeed makes this process's guard marks unlike any other process's; ownerSeq makes
// them unlike each other. A guard mark's owner token only has to be unique (it says whose
// mark a key holds, for Commit and Release), not secret, so a counter under a random prefix
// serves, without a getrandom system call per check.
var (
	ownerSeed = func() (b [8]byte) {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		return b
	}()
	ownerSeq atomic.Uint64
)

// newMark returns a pending mark ('P' and a fresh owner token) in one allocation.
func newMark() string {
	var raw [16]byte
	copy(raw[:8], ownerSeed[:])
	binary.BigEndian.PutUint64(raw[8:], ownerSeq.Add(1))
	var b [1 + ownerLen]byte
	b[0] = statePending
	base64.RawURLEncoding.Encode(b[1:], raw[:])
	return string(b[:])
}
