-- Compare and pexpire: extends the lock only if this very hold still holds it.
-- KEYS[1] lock hash; ARGV[1] owner token; ARGV[2] the hold's fencing token; ARGV[3] TTL (ms).
-- Returns 1 extended, 0 not ours (another owner, or a later hold of the same owner).
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'f') ~= ARGV[2] then
	return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
