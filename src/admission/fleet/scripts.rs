//! The Lua scripts the fleet's Redis runs, each one atomic step: admit a request against the shared windows and
//! budgets, reconcile a reservation, replace the fleet's keys if no one changed them meanwhile.

/// Checks the budget, both windows, and records the request and its reservation — or records nothing.
/// KEYS: requests, token window, token amounts, token total, today's spend.
/// ARGV: rpm (0: none), tpm (0: none), tokens, reservation id, daily budget (-1: none), window ms, monthly
/// budget (-1: none). `KEYS[6]` is this month's spend.
/// Returns {verdict, number}: {"ok", spent today, spent this month, requests in the window, ms until the oldest
/// leaves, tokens in the window, ms until the oldest leaves}, {"rpm", wait ms}, {"tpm", wait ms},
/// {"tpm_never", 0}, {"budget", spent today as a string}, {"budget_month", spent this month}. The spend an
/// admission returns is what the replica falls back on if Redis goes away (`KeyLimiter::saw_fleet_spend`).
pub(super) const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local id, budget, window = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[5]) or '0')
  if spent >= budget then return {'budget', tostring(spent)} end
end
local monthly = tonumber(ARGV[7] or '-1')
if monthly >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[6]) or '0')
  if spent >= monthly then return {'budget_month', tostring(spent)} end
end
local old = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', old)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', old)
for _, m in ipairs(expired) do
  redis.call('DECRBY', KEYS[4], tonumber(redis.call('HGET', KEYS[3], m) or '0'))
  redis.call('HDEL', KEYS[3], m)
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', old) end
if rpm > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local frees = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
    return {'rpm', tostring(tonumber(frees[2]) + window - now)}
  end
end
if tpm > 0 then
  if tokens > tpm then return {'tpm_never', '0'} end
  local excess = tonumber(redis.call('GET', KEYS[4]) or '0') + tokens - tpm
  if excess > 0 then
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local freed = 0
    for i = 1, #entries, 2 do
      freed = freed + tonumber(redis.call('HGET', KEYS[3], entries[i]) or '0')
      if freed >= excess then return {'tpm', tostring(tonumber(entries[i + 1]) + window - now)} end
    end
    return {'tpm', tostring(window)}
  end
end
-- Both windows record every admitted call, limit or not: a limit set or lowered at run time then counts the
-- calls and tokens already in its window.
redis.call('ZADD', KEYS[1], now, id)
redis.call('ZADD', KEYS[2], now, id)
redis.call('HSET', KEYS[3], id, tokens)
redis.call('INCRBY', KEYS[4], tokens)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], window * 2) end
-- Where the key stands now, for the rate-limit headers: when each window's oldest entry leaves it.
local function frees(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then return '0' end
  return tostring(math.max(0, tonumber(first[2]) + window - now))
end
return {'ok', redis.call('GET', KEYS[5]) or '0', redis.call('GET', KEYS[6]) or '0',
  tostring(redis.call('ZCARD', KEYS[1])), frees(KEYS[1]), redis.call('GET', KEYS[4]) or '0', frees(KEYS[2])}
"#;

/// Rewrites a reservation's amount, if it is still in the window. KEYS: token amounts, token total.
/// ARGV: reservation id, the real total.
pub(super) const RECONCILE: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[2], tonumber(ARGV[2]) - tonumber(cur))
return 1
"#;

/// Takes an admitted request back out of the windows (another level refused the call). KEYS: requests, token
/// window, token amounts, token total. ARGV: reservation id. Returns 1 if it was still there.
pub(super) const CANCEL: &str = r#"
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local amount = redis.call('HGET', KEYS[3], ARGV[1])
if amount then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('DECRBY', KEYS[4], tonumber(amount))
end
return removed
"#;

/// Replaces the fleet's API keys if nobody changed them meanwhile. KEYS: version, state. ARGV: the version
/// read, the new state (JSON), the new version. Returns the new version, or -1 when the version moved on.
pub(super) const PUT_KEYS: &str = r#"
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[3])
return tonumber(ARGV[3])
"#;
