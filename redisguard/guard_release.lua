-- Owner-checked release of a pending mark after the request failed.
-- KEYS[1] guard key; ARGV[1] our pending mark. Returns 1 when deleted, 0 when not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
