"""Lua scripts of the Redis store. Each runs atomically on one hash slot.

Keys of a saga live under its bucket's hash tag (``{ns.bN}``), together with
the bucket's timers, outbox and index, so one script can update all of them
on a Redis Cluster too.
"""

from __future__ import annotations

# KEYS: state hash, history list, timers zset, outbox hash, outbox zset, started zset
# ARGV: expected_rev, new_rev, state, dedupe_id, name, status, history entry,
#       index prefix, saga_id, retention_s, terminal (0/1), n_outbox, n_due, n_cancel,
#       parked services ("\n"-separated, '' for none), parked index prefix,
#       then n_outbox (field, entry), n_due (member, score), n_cancel (member)
#
# The parked index (``<prefix><service>``, a zset of saga ids by when they parked)
# is kept here, like the status index: the services a saga waits for are stored
# on its hash (``parked``), so the script knows which index entries to drop when
# the saga stops waiting, and recovery finds the parked sagas of a service without
# scanning every saga.
#
# The started index (a zset of saga ids by their first commit) is written once, by
# the commit that creates the saga: listing newest first by it is stable while
# sagas change, unlike the status index, which moves a saga on every transition.
#
# The outbox and index scores are Redis TIME, read here: one clock for every
# replica, so the relay (which judges age by the same TIME) never takes a fresh
# entry for an old one because its writer's clock ran behind. Redis 7 replicates
# a script's effects, not the script, so TIME is allowed. Timer scores are due
# times the core computed from the input's time (RedisClock, itself Redis TIME
# corrected locally): they say when, not when written, and replay needs them.
#
# Idempotent: redis-py retries a command that timed out, and the first try may
# have committed. The token of the last commit is kept on the saga, so a retry
# of the very commit that succeeded answers "committed" again; the same input
# decided by another replica from the same revision (a due timer both fired)
# has another token and is a "duplicate": it must not publish its copy. The ids of
# the inputs applied are fields ``d:<id>`` of the saga's hash: a small hash is
# stored compactly, a set of strings is not (Redis 7.0).
COMMIT = """
local state_key, hist_key, timers_key, outbox_key, outbox_z =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local expected, new_rev, dedupe_id = tonumber(ARGV[1]), ARGV[2], ARGV[4]
local seen = 'd:' .. dedupe_id
local current = redis.call('HMGET', state_key, 'rev', 'last', 'status', 'name', seen, 'parked')
if current[5] then
  if current[1] == new_rev and current[2] == ARGV[17] then return 'committed' end
  return 'duplicate'
end
local rev = current[1] and tonumber(current[1]) or -1
if rev ~= expected then return 'conflict' end
local saga_id, prefix = ARGV[9], ARGV[8]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', state_key, 'state', ARGV[3], 'rev', new_rev, 'name', ARGV[5],
           'status', ARGV[6], 'last', ARGV[17], seen, '')
redis.call('RPUSH', hist_key, ARGV[7])
local i = 18
for _ = 1, tonumber(ARGV[12]) do
  redis.call('HSET', outbox_key, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', outbox_z, now_ms, ARGV[i])
  i = i + 2
end
for _ = 1, tonumber(ARGV[13]) do
  redis.call('ZADD', timers_key, ARGV[i + 1], ARGV[i])
  i = i + 2
end
for _ = 1, tonumber(ARGV[14]) do
  redis.call('ZREM', timers_key, ARGV[i])
  i = i + 1
end
if current[3] ~= ARGV[6] then
  if current[3] then redis.call('ZREM', prefix .. current[4] .. ':' .. current[3], saga_id) end
end
redis.call('ZADD', prefix .. ARGV[5] .. ':' .. ARGV[6], now_ms, saga_id)
if rev == -1 and KEYS[6] then redis.call('ZADD', KEYS[6], now_ms, saga_id) end
local old_parked, new_parked = current[6] or '', ARGV[15]
if old_parked ~= new_parked then
  local before, after = {}, {}
  for s in string.gmatch(old_parked, '[^\\n]+') do before[s] = true end
  for s in string.gmatch(new_parked, '[^\\n]+') do after[s] = true end
  for s in pairs(before) do
    if not after[s] then redis.call('ZREM', ARGV[16] .. s, saga_id) end
  end
  for s in pairs(after) do
    if not before[s] then redis.call('ZADD', ARGV[16] .. s, now_ms, saga_id) end
  end
  if new_parked == '' then
    redis.call('HDEL', state_key, 'parked')
  else
    redis.call('HSET', state_key, 'parked', new_parked)
  end
end
if ARGV[11] == '1' then
  local ttl = tonumber(ARGV[10])
  if ttl > 0 then
    redis.call('EXPIRE', state_key, ttl)
    redis.call('EXPIRE', hist_key, ttl)
    -- The index of finished sagas: older entries go now, and the whole key
    -- with the last saga that finished in it.
    local index = prefix .. ARGV[5] .. ':' .. ARGV[6]
    redis.call('ZREMRANGEBYSCORE', index, '-inf', now_ms - ttl * 1000)
    redis.call('EXPIRE', index, ttl)
  end
end
return 'committed'
"""

# KEYS: outbox hash, outbox zset; ARGV: age_ms, limit
# Entries committed at least age_ms ago by Redis TIME, the clock COMMIT scored
# them with; returns score, entry, score, entry, ...
PENDING = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms - tonumber(ARGV[1]),
                        'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local found = {}
for j = 1, #rows, 2 do
  local entry = redis.call('HGET', KEYS[1], rows[j])
  if entry then
    found[#found + 1] = rows[j + 1]
    found[#found + 1] = entry
  end
end
return found
"""

# KEYS: history list, timers zset; ARGV: history entry, timer member ('' for none)
RECORD = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RPUSH', KEYS[1], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: state hashes of one bucket; returns the ``state`` field of each (false
# for a saga gone since its id was read). One script reads a batch of states:
# at start-up a coordinator reads every saga in flight (its version), and a
# pipeline of single reads costs redis-py several times more per state.
STATES = """
local found = {}
for i, key in ipairs(KEYS) do found[i] = redis.call('HGET', key, 'state') end
return found
"""
