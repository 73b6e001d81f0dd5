-- Obtains a lease lock and issues its fencing token, in one step.
-- KEYS[1] lock hash {o = owner, f = fencing token, n = re-entry count};
-- KEYS[2] the resource's fencing counter (no TTL). Both share a hash tag.
-- ARGV[1] owner token; ARGV[2] TTL (ms).
-- Returns {1, token} when obtained, {2, token} when re-entered by the same owner,
-- {0, pttl} when held by another owner.
local owner = redis.call('HGET', KEYS[1], 'o')
if not owner then
	-- The counter never goes below the server clock in microseconds, so tokens keep rising
	-- even if the counter is lost (failover before replication, restart without persistence)
	-- as long as server clocks agree to within the time the loss takes.
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
	local token = redis.call('INCR', KEYS[2])
	if token < now then
		token = now
		redis.call('SET', KEYS[2], string.format('%d', token))
	end
	redis.call('HSET', KEYS[1], 'o', ARGV[1], 'f', string.format('%d', token), 'n', 1)
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
	return {1, token}
end
if owner == ARGV[1] then
	redis.call('HINCRBY', KEYS[1], 'n', 1)
	if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
		redis.call('PEXPIRE', KEYS[1], ARGV[2])
	end
	return {2, tonumber(redis.call('HGET', KEYS[1], 'f'))}
end
return {0, redis.call('PTTL', KEYS[1])}
