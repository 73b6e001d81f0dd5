-- Remaining TTL of the lock if the owner holds it.
-- KEYS[1] lock hash; ARGV[1] owner token. Returns the PTTL in ms, or -3 when not ours.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
	return -3
end
return redis.call('PTTL', KEYS[1])
