package redisguard

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts, loaded once. Script.Run sends EVALSHA and falls back to EVAL when the
// server does not have the script yet (NOSCRIPT): one round trip, two the first time a
// server sees a script.
var (
	//go:embed guard_check.lua
	guardCheckSrc string
	//go:embed guard_commit.lua
	guardCommitSrc string
	//go:embed guard_release.lua
	guardReleaseSrc string
	//go:embed token_consume.lua
	tokenConsumeSrc string
	//go:embed lock_obtain.lua
	lockObtainSrc string
	//go:embed lock_raise.lua
	lockRaiseSrc string
	//go:embed lock_refresh.lua
	lockRefreshSrc string
	//go:embed lock_release.lua
	lockReleaseSrc string
	//go:embed lock_pttl.lua
	lockPTTLSrc string

	guardCheck   = redis.NewScript(guardCheckSrc)
	guardCommit  = redis.NewScript(guardCommitSrc)
	guardRelease = redis.NewScript(guardReleaseSrc)
	tokenConsume = redis.NewScript(tokenConsumeSrc)
	lockObtain   = redis.NewScript(lockObtainSrc)
	lockRaise    = redis.NewScript(lockRaiseSrc)
	lockRefresh  = redis.NewScript(lockRefreshSrc)
	lockRelease  = redis.NewScript(lockReleaseSrc)
	lockPTTL     = redis.NewScript(lockPTTLSrc)
)
