-- Compare and delete: ends one (re-)entry of the owner's hold; the last one deletes the lock.
-- KEYS[1] lock hash; ARGV[1] owner token; ARGV[2] the hold's fencing token, or '' to match the
-- owner alone (only for undoing the obtain attempt that just ran, whose tokens are its own).
-- Comparing the fencing token too keeps a hold that expired from ending a later hold of the
-- same owner, which has a larger token. Returns 1 released, 0 not ours (nothing changed).
if redis.call('HGET', KEYS[1], 'o') ~= ARGV[1] then
	return 0
end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'f') ~= ARGV[2] then
	return 0
end
if redis.call('HINCRBY', KEYS[1], 'n', -1) <= 0 then
	redis.call('DEL', KEYS[1])
end
return 1
