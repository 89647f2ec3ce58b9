-- Index one ranked entry, atomically. KEYS: the all set, the best set, the holders hash
-- (participant name -> their member in the best set). ARGV: member, composite key, the
-- participant's name ("" when anonymous).
-- * A member already in the all set with another key was indexed by a rebuild after a
--   rescoring: this write carries the old score and is dropped.
-- * A participant's entry replaces their current one in the best set only when its
--   composite key is higher (the ranking rule); an anonymous entry stands alone.
local indexed = redis.call('ZSCORE', KEYS[1], ARGV[1])
if indexed then
  if tonumber(indexed) ~= tonumber(ARGV[2]) then return 0 end
else
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
if ARGV[3] == '' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
local old = redis.call('HGET', KEYS[3], ARGV[3])
if old then
  local held = redis.call('ZSCORE', KEYS[2], old)
  if held and tonumber(held) >= tonumber(ARGV[2]) then return 1 end
  redis.call('ZREM', KEYS[2], old)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
return 1
