-- First-sighting check of the front guard, atomic.
-- KEYS[1] guard key; ARGV[1] the pending mark ("P" .. owner); ARGV[2] in-flight TTL (ms).
-- Returns the key's current value, or 1 after marking the key (with its TTL, in the same
-- step: the key never exists without an expiry). Not nil: go-redis treats a nil reply as an
-- error and classifies it for retries, which costs the client a dozen allocations.
local cur = redis.call('GET', KEYS[1])
if cur then
	return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
