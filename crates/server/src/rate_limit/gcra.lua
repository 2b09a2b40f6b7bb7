-- GCRA over several rates at once, atomically (mailroom_core::gcra mirrors this arithmetic).
-- KEYS: one per rate. ARGV: count, period (microseconds) for each rate, in the same order.
-- Returns {allowed, limit, remaining, reset_us, retry_after_us} of the most constrained rate.
-- Time is Redis's own (TIME), so that every node counts against one clock.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tats = {}
local refused = nil
local tightest = nil
for i, key in ipairs(KEYS) do
  local count = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = math.floor(period / math.max(count, 1))
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    local retry = allow_at - now
    if refused == nil or retry > refused[5] then
      refused = {0, count, 0, tat - now, retry}
    end
  else
    local remaining = math.floor((period - (new_tat - now)) / math.max(interval, 1))
    if tightest == nil or remaining < tightest[3] then
      tightest = {1, count, remaining, new_tat - now, 0}
    end
  end
  tats[i] = new_tat
end
if refused ~= nil then
  return refused
end
for i, key in ipairs(KEYS) do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%d', tats[i]), 'PX', ttl)
end
return tightest or {1, 0, 0, 0, 0}
