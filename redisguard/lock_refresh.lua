-- Compare and pexpire: extends the lock only if the owner still holds it.
-- KEYS[1] lock hash; ARGV[1] owner token; ARGV[2] TTL (ms). Returns 1 extended, 0 not ours.
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
	return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
