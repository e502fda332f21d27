-- ratelimit.lua: the Redis peer of regstack.rate_limit_check, a sliding
-- window kept as a sorted set per key (member: a unique event id, score:
-- the event time in microseconds from the server clock).  Exact: the script
-- runs atomically.  Allowed calls record their event.
--   KEYS[1]  the key (e.g. rl:login_attempt:<user>)
--   ARGV[1]  window in microseconds, ARGV[2] max events, ARGV[3] event id
-- Returns {allowed (1|0), remaining, retry_after in microseconds}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, limit - n - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
