-- Remaining TTL of the lock if this very hold still holds it.
-- KEYS[1] lock hash; ARGV[1] owner token; ARGV[2] the hold's fencing token.
-- Returns the PTTL in ms, or -3 when not ours (another owner, or a later hold of the same owner).
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'f') ~= ARGV[2] then
	return -3
end
return redis.call('PTTL', KEYS[1])
