-- Stores the committed entry over our own pending mark.
-- KEYS[1] guard key; ARGV[1] our pending mark; ARGV[2] the committed entry; ARGV[3] TTL (ms).
-- Returns 1 when stored, 0 when the key holds another request's mark or entry (left alone).
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
	return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
