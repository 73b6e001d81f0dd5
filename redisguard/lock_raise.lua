-- Quorum mode: makes a node agree on the hold's fencing token (the maximum over the majority).
-- KEYS[1] lock hash; KEYS[2] fencing counter; ARGV[1] owner token; ARGV[2] fencing token.
-- Returns 1 when the lock is ours and the counter is now at least the token, 0 when not ours.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
	return 0
end
redis.call('HSET', KEYS[1], 'f', ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur < tonumber(ARGV[2]) then
	redis.call('SET', KEYS[2], ARGV[2])
end
return 1
