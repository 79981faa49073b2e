//! The Lua scripts that change a session's hash (or the leader key, or the presence keys)
//! atomically. Each touches one key, or keys of one hash slot, so that it runs on a Redis
//! Cluster too.

use redis::Script;

/// Claims a session: `KEYS[1]` its hash, `ARGV[1]` the claiming node, `ARGV[2]` the cookie
/// check (empty: none; `=` and the cookie the request presented; `-`: it presented none, so
/// the session must not be bound to its cookie), `ARGV[3]` how long the move may take (ms).
/// Answers `{"unknown"}`, `{"denied"}`, `{"busy"}` (another move is under way), or
/// `{"claimed", epoch, former owner, browser, bound, ack, attrs, subs, pos}`.
pub(crate) fn claim() -> Script {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown'} end
if ARGV[2] == '-' then
  if redis.call('HGET', KEYS[1], 'bound') == '1' then return {'denied'} end
elseif ARGV[2] ~= '' then
  if (redis.call('HGET', KEYS[1], 'browser') or '') ~= string.sub(ARGV[2], 2) then return {'denied'} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(redis.call('HGET', KEYS[1], 'moving') or '0') > now then return {'busy'} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local former = redis.call('HGET', KEYS[1], 'owner') or ''
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'moving', tostring(now + tonumber(ARGV[3])))
local f = redis.call('HMGET', KEYS[1], 'browser', 'bound', 'ack', 'attrs', 'subs', 'pos')
return {'claimed', tostring(epoch), former, f[1] or '', f[2] or '0', f[3] or '0', f[4] or '{}', f[5] or '[]', f[6] or '0'}
",
    )
}

/// Ends the move of a session by `ARGV[1]`, its owner now.
pub(crate) fn moved() -> Script {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('HDEL', KEYS[1], 'moving') end
return 1
",
    )
}

/// Writes a session's record if `ARGV[1]` owns it: `ARGV[2..7]` are browser, bound, ack,
/// attrs, subs, pos. Answers 1 when written, 0 otherwise.
pub(crate) fn checkpoint() -> Script {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'browser', ARGV[2], 'bound', ARGV[3], 'ack', ARGV[4], 'attrs', ARGV[5], 'subs', ARGV[6], 'pos', ARGV[7])
return 1
",
    )
}

/// Writes the record of a session let go of for the move under lease `ARGV[1]`, if no
/// claim came since; `ARGV[2..7]` as for `checkpoint`. Answers 1 when written, 0 otherwise.
pub(crate) fn hand_over() -> Script {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'browser', ARGV[2], 'bound', ARGV[3], 'ack', ARGV[4], 'attrs', ARGV[5], 'subs', ARGV[6], 'pos', ARGV[7])
return 1
",
    )
}

/// Like `checkpoint`, and leaves the session without an owner.
pub(crate) fn release() -> Script {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'browser', ARGV[2], 'bound', ARGV[3], 'ack', ARGV[4], 'attrs', ARGV[5], 'subs', ARGV[6], 'pos', ARGV[7], 'owner', '')
return 1
",
    )
}

/// Deletes a session if `ARGV[1]` owns it (`*`: whoever does). Answers the owner it had
/// (possibly empty) when deleted, nil otherwise.
pub(crate) fn remove() -> Script {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if ARGV[1] ~= '*' and owner ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return owner
",
    )
}

/// Takes or keeps the leader key for `ARGV[1]`, for `ARGV[2]` milliseconds. Answers 1 while
/// `ARGV[1]` leads.
pub(crate) fn lead() -> Script {
    Script::new(
        r"
local leader = redis.call('GET', KEYS[1])
if not leader then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif leader == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
}

/// Associates session `ARGV[1]` with user `ARGV[2]` (empty: with none). `KEYS[1]` maps sessions
/// to users, `KEYS[2]` online users to their number of sessions, `KEYS[3]` online users to the
/// version of their coming online, `KEYS[4]` counts versions (all four in one hash slot).
/// Answers `{left, version, joined, version}`: the user that went offline and the one that
/// came online (empty, 0: none).
pub(crate) fn associate() -> Script {
    Script::new(
        r"
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if old == ARGV[2] then return {'', 0, '', 0} end
local left, left_version, joined, joined_version = '', 0, '', 0
if old ~= '' then
  if redis.call('HINCRBY', KEYS[2], old, -1) <= 0 then
    redis.call('HDEL', KEYS[2], old)
    redis.call('HDEL', KEYS[3], old)
    left = old
    left_version = redis.call('INCR', KEYS[4])
  end
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
    joined = ARGV[2]
    joined_version = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[3], ARGV[2], joined_version)
  end
end
return {left, left_version, joined, joined_version}
",
    )
}
