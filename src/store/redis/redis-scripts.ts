import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * The Lua scripts of the Redis store. A script runs atomically on the server, so each one
 * is a read-check-write that no other replica can interleave with. Scripts name every key
 * they touch in KEYS (the channel of PUBLISH is not a key).
 */
export class LuaScript {
  readonly sha: string;
  constructor(
    readonly name: string,
    readonly lua: string,
  ) {
    this.sha = createHash('sha1').update(lua, 'utf8').digest('hex');
  }

  /**
   * EVALSHA, falling back to EVAL when the server does not know the script (first use, or
   * after a restart flushed the script cache). NOSCRIPT means nothing ran, so the retry
   * cannot apply a write twice.
   */
  async run(client: Redis, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return client.eval(this.lua, keys.length, ...keys, ...args);
      throw err;
    }
  }
}

/** KEYS: task, active-index. ARGV: d, state, e ('' when not ended), expiresAt, id. Returns 1, or 0 if the id exists. */
export const CREATE_TASK = new LuaScript(
  'createTask',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'st', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'e', ARGV[3]) end
if ARGV[2] == 'active' then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5]) end
return 1
`,
);

/**
 * KEYS: task, active-index. ARGV: e (JSON {endedAt, endedBy}), id, retention ms (0 = keep).
 * Ends an active task only (a second end keeps the first); returns {d, st, e} or nil.
 */
export const END_TASK = new LuaScript(
  'endTask',
  `
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return nil end
if st == 'active' then
  redis.call('HSET', KEYS[1], 'st', 'ended', 'e', ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return redis.call('HMGET', KEYS[1], 'd', 'st', 'e')
`,
);

/**
 * KEYS: token, task-index (or a placeholder), plugin-index, task counts (or a placeholder).
 * ARGV: json, token ttl ms, issuedAt, jti, expiresAt, has-task ('1'/'0'), task-index ttl ms,
 * prune plugin entries expiring before, plugin, token key prefix, the tokens-per-task limit
 * ('' none). Returns 1, 0 when the jti is already recorded, or -1 when the plugin already has
 * the limit's count of tokens in the task (nothing changes in either case). The task counts (a hash plugin -> tokens, the
 * tokens-per-task quota) of a task recorded before they existed are counted once from its
 * index first (tokens whose record is already gone are not counted).
 */
export const RECORD_ISSUED = new LuaScript(
  'recordIssued',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[6] == '1' then
  if redis.call('EXISTS', KEYS[4]) == 0 then
    for _, jti in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      local raw = redis.call('GET', ARGV[10] .. jti)
      if raw then redis.call('HINCRBY', KEYS[4], cjson.decode(raw).plugin, 1) end
    end
  end
  if ARGV[11] ~= '' and tonumber(redis.call('HGET', KEYS[4], ARGV[9]) or '0') >= tonumber(ARGV[11]) then return -1 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
  redis.call('HINCRBY', KEYS[4], ARGV[9], 1)
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[2], ARGV[7]) end
  if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[4], ARGV[7]) end
end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[8])
if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
return 1
`,
);

/**
 * Compare-and-set append of a batch of records to the audit chain. KEYS: head, log, store
 * epoch. ARGV: the empty-log head, the expected head ("seq:hash"), n, then n pairs (seq,
 * record JSON), then the new head, then the writer's epoch ('' = unchecked). Returns 1 when
 * appended, or the current head (a string) when another writer got there first (nothing
 * written); an error LEASH_STORE_RESET when the store is not in the writer's epoch, so a
 * chain is never silently restarted in a store that lost it.
 */
export const AUDIT_APPEND = new LuaScript(
  'auditAppend',
  `
local n = tonumber(ARGV[3])
local epoch = ARGV[5 + 2 * n]
if epoch ~= '' and redis.call('GET', KEYS[3]) ~= epoch then return redis.error_reply('LEASH_STORE_RESET the store epoch changed') end
local h = redis.call('GET', KEYS[1]) or ARGV[1]
if h ~= ARGV[2] then return h end
for i = 0, n - 1 do
  if redis.call('HEXISTS', KEYS[2], ARGV[4 + 2 * i]) == 1 then
    return redis.error_reply('LEASH_AUDIT_CORRUPT seq ' .. ARGV[4 + 2 * i] .. ' exists beyond the head')
  end
end
for i = 0, n - 1 do redis.call('HSET', KEYS[2], ARGV[4 + 2 * i], ARGV[5 + 2 * i]) end
redis.call('SET', KEYS[1], ARGV[4 + 2 * n])
return 1
`,
);

/** KEYS: replay key. ARGV: expiresAt, now, ttl ms. 1 the first time, 0 while a live entry exists. */
export const REMEMBER = new LuaScript(
  'remember',
  `
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
`,
);

/**
 * KEYS: seq counter, log (by seq), keep index (by keepUntil), store epoch. ARGV: the
 * record's JSON minus its opening brace and seq, keepUntil, channel, the writer's epoch
 * ('' = unchecked). The counter only ever grows, so a seq is never reused whatever is
 * purged; a store that lost it (another epoch) refuses with LEASH_STORE_RESET rather than
 * restart the feed at 1. Returns the stored record's JSON.
 */
export const ADD_REVOCATION = new LuaScript(
  'addRevocation',
  `
if ARGV[4] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[4] then return redis.error_reply('LEASH_STORE_RESET the store epoch changed') end
local seq = redis.call('INCR', KEYS[1])
local rec = '{"seq":' .. seq .. ',' .. ARGV[1]
redis.call('ZADD', KEYS[2], seq, rec)
redis.call('ZADD', KEYS[3], ARGV[2], seq)
redis.call('PUBLISH', ARGV[3], '{"type":"revocation","revocation":' .. rec .. '}')
return rec
`,
);

/** KEYS: keep index, log. ARGV: now, batch. Removes up to `batch` records with keepUntil <= now; returns how many. */
export const PURGE_REVOCATIONS = new LuaScript(
  'purgeRevocations',
  `
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, s in ipairs(seqs) do redis.call('ZREMRANGEBYSCORE', KEYS[2], s, s) end
if #seqs > 0 then redis.call('ZREM', KEYS[1], unpack(seqs)) end
return #seqs
`,
);

/** KEYS: suspensions hash. ARGV: plugin, record JSON, channel, change JSON. 1 if newly suspended. */
export const SUSPEND = new LuaScript(
  'suspend',
  `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`,
);

/** KEYS: suspensions hash. ARGV: plugin, channel, change JSON. 1 if it was suspended. */
export const RESUME = new LuaScript(
  'resume',
  `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`,
);

/*
 * Approvals. The record is a hash: `d` (immutable JSON), `st` state, `rq` requestedAt, `exp`
 * expiresAt, and when set `dAt` decidedAt, `dBy`, `dR` reason, `rb` redeemBy, `u` usedAt,
 * `p` lastPollAt (an absent field is undefined). Index entries move between the per-state
 * sorted sets in the same script as the state. `drop` = when the record may be forgotten
 * (its TTL), also kept in a sorted set so stale index entries can be removed.
 */

/**
 * KEYS: record, idx:all, idx:pending, idx:approved, idx:denied, idx:used, drop index.
 * ARGV: id, requestedAt, state, ttl ms, dropAt, now, gc batch, then field/value pairs.
 * Also drops index entries of records whose time has passed. 1, or 0 if the id exists.
 */
export const CREATE_APPROVAL = new LuaScript(
  'createApproval',
  `
local stale = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ARGV[6], 'LIMIT', 0, tonumber(ARGV[7]))
if #stale > 0 then
  for i = 2, 7 do redis.call('ZREM', KEYS[i], unpack(stale)) end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local idx = ({ pending = 3, approved = 4, denied = 5, used = 6 })[ARGV[3]]
redis.call('ZADD', KEYS[idx], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[7], ARGV[5], ARGV[1])
return 1
`,
);

/**
 * The exchange's atomic "dedupe, limit, create" (ApprovalStore.openApproval).
 * KEYS: record, idx:all, idx:pending, drop index, plugin's pending set, task's pending set
 * (the plugin's again when there is no task). ARGV: id, requestedAt (= now), expiresAt, ttl
 * ms, dropAt, gc batch, request hash, dedupe key, max per plugin, max per task, has-task
 * ('1'/'0'), record key prefix, then field/value pairs. The per-plugin and per-task sets
 * hold ids by expiry; an entry whose record is no longer pending is removed when met, so
 * each call reads at most the live entries (bounded by the limits). Record keys are built
 * from the prefix here: Leash's Redis store is one server, not a cluster.
 * Returns {'existing', id} | {'limited', 'plugin'|'task', n} | {'created'} | {'exists'}.
 */
export const OPEN_APPROVAL = new LuaScript(
  'openApproval',
  `
local now = tonumber(ARGV[2])
local stale = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
if #stale > 0 then
  for i = 2, 4 do redis.call('ZREM', KEYS[i], unpack(stale)) end
end
local function live(set)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '(' .. now, '+inf')) do
    if redis.call('HGET', ARGV[12] .. id, 'st') == 'pending' then out[#out + 1] = id else redis.call('ZREM', set, id) end
  end
  return out
end
local mine = live(KEYS[5])
local loose = nil
for _, id in ipairs(mine) do
  local h = redis.call('HMGET', ARGV[12] .. id, 'rh', 'dk')
  if h[1] == ARGV[7] then return { 'existing', id } end
  if not loose and h[2] == ARGV[8] then loose = id end
end
if loose then return { 'existing', loose } end
if #mine >= tonumber(ARGV[9]) then return { 'limited', 'plugin', #mine } end
if ARGV[11] == '1' then
  local theirs = live(KEYS[6])
  if #theirs >= tonumber(ARGV[10]) then return { 'limited', 'task', #theirs } end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return { 'exists' } end
local fields = { 'rh', ARGV[7], 'dk', ARGV[8] }
for i = 13, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
if ARGV[11] == '1' then redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1]) end
return { 'created' }
`,
);

/**
 * KEYS: record, idx:pending, idx:<new state>, drop index. ARGV: id, state, at, by,
 * has-reason ('1'/'0'), reason, has-redeemBy, redeemBy, now, retention ms.
 * pending → state only while `at < exp`; returns HGETALL of the updated record, or nil.
 */
export const DECIDE_APPROVAL = new LuaScript(
  'decideApproval',
  `
local st = redis.call('HGET', KEYS[1], 'st')
if st ~= 'pending' then return nil end
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp'))
local at = tonumber(ARGV[3])
if not (at < exp) then return nil end
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'dAt', ARGV[3], 'dBy', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'dR', ARGV[6]) end
local drop = math.max(exp, at)
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'rb', ARGV[8])
  drop = math.max(drop, tonumber(ARGV[8]))
end
drop = drop + tonumber(ARGV[10])
local rq = redis.call('HGET', KEYS[1], 'rq')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], rq, ARGV[1])
redis.call('ZADD', KEYS[4], string.format('%d', drop), ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, drop - tonumber(ARGV[9]))))
return redis.call('HGETALL', KEYS[1])
`,
);

/**
 * KEYS: record, idx:approved, idx:used, drop index. ARGV: id, at, now, retention ms.
 * approved → used only while `at <= rb` (no rb: never). 1 for the one caller that wins, else 0.
 */
export const CONSUME_APPROVAL = new LuaScript(
  'consumeApproval',
  `
if redis.call('HGET', KEYS[1], 'st') ~= 'approved' then return 0 end
local rb = redis.call('HGET', KEYS[1], 'rb')
local at = tonumber(ARGV[2])
if not rb or not (at <= tonumber(rb)) then return 0 end
redis.call('HSET', KEYS[1], 'st', 'used', 'u', ARGV[2])
local rq = redis.call('HGET', KEYS[1], 'rq')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], rq, ARGV[1])
local drop = math.max(tonumber(redis.call('HGET', KEYS[1], 'exp')), tonumber(rb), at) + tonumber(ARGV[4])
redis.call('ZADD', KEYS[4], string.format('%d', drop), ARGV[1])
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, drop - tonumber(ARGV[3]))))
return 1
`,
);

/** KEYS: record. ARGV: at, minIntervalMs. 1 = ok (poll recorded; also for an unknown id), 0 = slow_down. */
export const POLL_APPROVAL = new LuaScript(
  'pollApproval',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
local p = redis.call('HGET', KEYS[1], 'p')
if p and tonumber(ARGV[1]) - tonumber(p) < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'p', ARGV[1])
return 1
`,
);

/**
 * KEYS: record, due index. ARGV: jti, immutable JSON, expiresAt, revokedAt ('' = unrevoked),
 * ttl ms (only used when revoked). An unrevoked lease has no TTL: it is kept until revoked.
 * 1, or 0 when the jti already has a lease.
 */
export const RECORD_LEASE = new LuaScript(
  'recordLease',
  `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2])
if ARGV[4] == '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'r', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
`,
);

/** KEYS: record, due index. ARGV: jti, at, ttl ms. 1 when it was unrevoked (now revoked), else 0. */
export const REVOKE_LEASE = new LuaScript(
  'revokeLease',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'r', ARGV[2]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`,
);

/**
 * KEYS: the aws-deny hash. ARGV: role, expected ('' = absent), next ('' = delete).
 * Returns 1 when written, 0 when the stored document no longer equals `expected`.
 */
export const CAS_AWS_DENY = new LuaScript(
  'casAwsDeny',
  `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur == false then cur = '' end
if cur ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
`,
);

/*
 * Store identity (see store-identity.ts): the epoch, the reset marker and the audit genesis.
 */

/**
 * KEYS: epoch, reset marker, audit genesis. ARGV: a new epoch, its fresh genesis JSON.
 * A replica opening the store: writes the epoch (and the genesis, if none) only when the
 * store has neither an epoch nor a pending reset. Returns {epoch, marker, genesis} as stored.
 */
export const INIT_IDENTITY = new LuaScript(
  'initIdentity',
  `
local e = redis.call('GET', KEYS[1])
local m = redis.call('GET', KEYS[2])
if not e and not m then
  e = ARGV[1]
  redis.call('SET', KEYS[1], e)
  if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('SET', KEYS[3], ARGV[2]) end
end
return { e, m, redis.call('GET', KEYS[3]) }
`,
);

/** KEYS: key. ARGV: expected value ('' = absent), new value. 1 when set, 0 when the value was not the expected one. */
export const SET_IF = new LuaScript(
  'setIf',
  `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`,
);

/**
 * `leash store accept-reset`. KEYS: epoch, reset marker, audit genesis, audit head,
 * revocation seq. ARGV: the marker and the epoch as read ('' = absent; anything else now
 * means someone moved: -1, retry), the epoch to keep, the genesis if the chain is empty,
 * the genesis if it is not, the head an empty chain continues from, the revocation seq
 * floor, '1' for a false alarm (the store kept the replicas' epoch: only the marker goes).
 * Returns 2 (continued an empty chain), 1 (recorded on a non-empty one), 0 (false alarm).
 */
export const ACCEPT_RESET = new LuaScript(
  'acceptReset',
  `
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return -1 end
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[2] then return -1 end
redis.call('DEL', KEYS[2])
if ARGV[8] == '1' then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
local empty = redis.call('EXISTS', KEYS[4]) == 0
if empty then
  redis.call('SET', KEYS[3], ARGV[4])
  redis.call('SET', KEYS[4], ARGV[6])
else
  redis.call('SET', KEYS[3], ARGV[5])
end
if tonumber(redis.call('GET', KEYS[5]) or '0') < tonumber(ARGV[7]) then redis.call('SET', KEYS[5], ARGV[7]) end
if empty then return 2 end
return 1
`,
);
