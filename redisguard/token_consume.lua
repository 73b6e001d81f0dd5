-- Consumes a one-time token: compare and swap to a tombstone in one step.
-- KEYS[1] token key. Returns 1 consumed now, 2 consumed before, 0 unknown or expired.
-- The tombstone keeps the token's remaining TTL, so "used" and "unknown" can be told apart
-- until the token would have expired anyway.
local cur = redis.call('GET', KEYS[1])
if not cur then
	return 0
end
if cur == 'used' then
	return 2
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
	redis.call('SET', KEYS[1], 'used', 'PX', pttl)
else
	redis.call('DEL', KEYS[1])
end
return 1
