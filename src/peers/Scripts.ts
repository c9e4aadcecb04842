/**
 * `--peers`'s Lua scripts, run in Redis with Effect's `Redis.eval` (loaded once, then called by their SHA): the merge
 * of a batch of pins (`domain/Peers.merge` is its model), an operator's change of a server, and the pruning of stale
 * pins. Each runs atomically in Redis, so two nibs' batches never interleave within a client.
 */
import * as Redis from "effect/persistence/Redis"
import type * as P from "../domain/Peers.ts"

/**
 * The batch of pins: for each line (client, server, previous, seen), Redis keeps the line when it has no live pin for
 * the client, the same server, or the server the line moves the client from (`Peers.merge`); the pins kept are
 * published, and the others are returned as client, value: the nib takes those.
 */
export const claim = Redis.script(
  (keys: P.Keys, from: string, now: number, trackingMillis: number, lines: ReadonlyArray<string>) => [
    keys.sticky,
    keys.channel,
    from,
    now,
    trackingMillis,
    ...lines
  ],
  {
    numberOfKeys: 1,
    lua: `
local now = tonumber(ARGV[3])
local tracking = tonumber(ARGV[4])
local kept = {}
local lost = {}
for i = 5, #ARGV, 4 do
  local client, server, previous, seen = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local value = redis.call('HGET', KEYS[1], client)
  local cseen, cserver
  if value then
    local bar = string.find(value, '|', 1, true)
    if bar then
      cseen = tonumber(string.sub(value, 1, bar - 1))
      cserver = string.sub(value, bar + 1)
    end
  end
  if cserver and tracking > 0 and cseen and now - cseen >= tracking then cserver = nil end
  if not cserver or cserver == server or cserver == previous then
    if cserver == server and cseen and cseen > seen then seen = cseen end
    redis.call('HSET', KEYS[1], client, string.format('%.0f', seen) .. '|' .. server)
    kept[#kept + 1] = { client, server, seen }
  else
    lost[#lost + 1] = client
    lost[#lost + 1] = value
  end
end
if #kept > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({ _tag = 'Pins', from = ARGV[2], at = now, pins = kept }))
end
return lost
`
  }
).withReturnType<ReadonlyArray<string>>()

/** An operator's change of a server: merged into its state in Redis, and published. */
export const serverChange = Redis.script(
  (keys: P.Keys, from: string, now: number, server: string, change: string) => [
    keys.servers,
    keys.channel,
    from,
    now,
    server,
    change
  ],
  {
    numberOfKeys: 1,
    lua: `
local value = redis.call('HGET', KEYS[1], ARGV[4])
local state = {}
if value then
  local ok, decoded = pcall(cjson.decode, value)
  if ok and type(decoded) == 'table' then state = decoded end
end
local change = cjson.decode(ARGV[5])
for k, v in pairs(change) do state[k] = v end
redis.call('HSET', KEYS[1], ARGV[4], cjson.encode(state))
redis.call('PUBLISH', ARGV[1], cjson.encode({ _tag = 'Server', from = ARGV[2], at = tonumber(ARGV[3]), server = ARGV[4], state = change }))
`
  }
)

/** Drops the pins forgotten at `now` (with a tracking time), then the oldest beyond `keep`. How many went. */
export const prune = Redis.script(
  (keys: P.Keys, now: number, trackingMillis: number, keep: number) => [keys.sticky, now, trackingMillis, keep],
  {
    numberOfKeys: 1,
    lua: `
local now = tonumber(ARGV[1])
local tracking = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
local live = {}
local dropped = 0
for i = 1, #all, 2 do
  local seen = tonumber(string.match(all[i + 1], '^(%d+)|')) or 0
  if tracking > 0 and now - seen >= tracking then
    redis.call('HDEL', KEYS[1], all[i])
    dropped = dropped + 1
  else
    live[#live + 1] = { all[i], seen }
  end
end
if #live > keep then
  table.sort(live, function(a, b) return a[2] < b[2] end)
  for i = 1, #live - keep do
    redis.call('HDEL', KEYS[1], live[i][1])
    dropped = dropped + 1
  end
end
return dropped
`
  }
).withReturnType<number>()
