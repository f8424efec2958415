"""``RedisTaskStore``: tasks in Redis, shared by every process that can reach it.

Keys (``P`` is the prefix)::

    P:task:<id>        hash: data (the JSON record), version, status, created, idem
    P:tasks            sorted set of ids, score = created_at in µs since the epoch
    P:status:<status>  sorted set of ids with that status, same score
    P:finished         sorted set of terminal ids, score = finished_at in µs
    P:idem:<key>       the id that owns an idempotency key

Every write is one Lua script, so it is atomic.  Ties in ``created_at`` are
ordered by id (Redis orders equal scores by member).  The scripts build key
names from the prefix, so a Redis Cluster is not supported.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._lifecycle import AsyncResource
from ..errors import ConfigurationError
from ..models import Task, TaskStatus
from .base import check_limit, check_replace, decode_task, encode_task, utc_micros

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisTaskStore"]

_PURGE_BATCH = 500

# KEYS: task, tasks, status zset, finished, idem (or "" when none)
# ARGV: prefix, id, data, version, status, created, finished ("" if none), idem key ("")
_CREATE = """
local prefix, id = ARGV[1], ARGV[2]
if ARGV[8] ~= '' then
  local owner = redis.call('GET', KEYS[5])
  if owner then
    local data = redis.call('HGET', prefix .. ':task:' .. owner, 'data')
    if data then return {0, data} end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, ''} end
redis.call('HSET', KEYS[1], 'data', ARGV[3], 'version', ARGV[4], 'status', ARGV[5],
           'created', ARGV[6], 'idem', ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[6], id)
redis.call('ZADD', KEYS[3], ARGV[6], id)
if ARGV[7] ~= '' then redis.call('ZADD', KEYS[4], ARGV[7], id) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], id) end
return {1, ARGV[3]}
"""

# KEYS: task, tasks, finished
# ARGV: prefix, id, old version, new version, data, status, created, finished ("" if none)
_REPLACE = """
local prefix, id = ARGV[1], ARGV[2]
local cur = redis.call('HMGET', KEYS[1], 'version', 'status', 'created')
if not cur[1] or cur[1] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[5], 'version', ARGV[4], 'status', ARGV[6],
           'created', ARGV[7])
redis.call('ZREM', prefix .. ':status:' .. cur[2], id)
redis.call('ZADD', prefix .. ':status:' .. ARGV[6], ARGV[7], id)
redis.call('ZADD', KEYS[2], ARGV[7], id)
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[8], id)
else
  redis.call('ZREM', KEYS[3], id)
end
return 1
"""

# Deletes one task and every index entry of it; returns 1 if the task existed.
_DELETE_ONE = """
local function delete_one(prefix, id)
  local key = prefix .. ':task:' .. id
  local cur = redis.call('HMGET', key, 'status', 'idem')
  local found = 0
  if cur[1] then
    redis.call('ZREM', prefix .. ':status:' .. cur[1], id)
    if cur[2] and cur[2] ~= '' then
      local ikey = prefix .. ':idem:' .. cur[2]
      if redis.call('GET', ikey) == id then redis.call('DEL', ikey) end
    end
    redis.call('DEL', key)
    found = 1
  end
  redis.call('ZREM', prefix .. ':tasks', id)
  redis.call('ZREM', prefix .. ':finished', id)
  return found
end
"""

# ARGV: prefix, id...   -> number deleted
_DELETE = (
    _DELETE_ONE
    + """
local n = 0
for i = 2, #ARGV do
  n = n + delete_one(ARGV[1], ARGV[i])
end
return n
"""
)

# KEYS: finished   ARGV: prefix, cutoff (exclusive, µs), batch
_PURGE = (
    _DELETE_ONE
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
local n = 0
for _, id in ipairs(ids) do
  n = n + delete_one(ARGV[1], id)
end
return {n, #ids}
"""
)

# KEYS: index zset   ARGV: prefix, stop index (-1 for all)
_LIST = """
local ids = redis.call('ZRANGE', KEYS[1], 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local data = redis.call('HGET', ARGV[1] .. ':task:' .. id, 'data')
  if data then out[#out + 1] = data end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Claim entries due by ARGV[1]: push them to ARGV[2]; return id, data pairs.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id)
end
return out
"""


class RedisTaskStore(AsyncResource):
    """Keeps tasks in Redis at ``url`` under ``prefix``.

    Without ``client`` the store opens a blocking pool of at most
    ``max_connections`` connections (more concurrent calls wait their turn).  Pass
    ``client`` (a ``redis.asyncio.Redis``) to share one; it is then not closed by
    :meth:`aclose`.  Needs the ``redis`` extra.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "ffmpeg_tasks",
        client: Redis | None = None,
        max_connections: int = 32,
    ) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError(f"invalid Redis key prefix {prefix!r}")
        self.prefix = prefix
        self._owns_client = client is None
        self._closed = False
        if client is None:
            try:
                from redis.asyncio import BlockingConnectionPool, Redis
            except ImportError as exc:
                raise ConfigurationError(
                    "RedisTaskStore needs the 'redis' package: pip install 'ffmpeg-tasks[redis]'"
                ) from exc
            try:
                pool = BlockingConnectionPool.from_url(url, max_connections=max_connections)
            except ValueError as exc:
                raise ConfigurationError(f"invalid Redis URL {url!r}: {exc}") from exc
            # A blocking pool makes bursts wait for a connection instead of failing.
            client = Redis.from_pool(pool)
        self._redis = client
        self._create = client.register_script(_CREATE)
        self._replace = client.register_script(_REPLACE)
        self._delete = client.register_script(_DELETE)
        self._purge = client.register_script(_PURGE)
        self._list = client.register_script(_LIST)
        self._claim = client.register_script(_CLAIM)

    def _key(self, *parts: str) -> str:
        if self._closed:
            raise RuntimeError(f"Redis task store {self.prefix!r} is closed")
        return ":".join((self.prefix, *parts))

    async def create(self, task: Task) -> Task:
        data = encode_task(task)
        idem = task.idempotency_key or ""
        finished = (
            str(utc_micros(task.finished_at))
            if task.finished_at is not None and task.status.is_terminal
            else ""
        )
        created = str(utc_micros(task.created_at))
        keys = [
            self._key("task", task.id),
            self._key("tasks"),
            self._key("status", task.status.value),
            self._key("finished"),
            self._key("idem", idem) if idem else self._key("idem"),
        ]
        args = [
            self.prefix,
            task.id,
            data,
            str(task.version),
            task.status.value,
            created,
            finished,
            idem,
        ]
        result = await self._create(keys=keys, args=args)
        if int(result[0]) == -1:
            raise ValueError(f"a task with id {task.id!r} already exists")
        return decode_task(_text(result[1]))

    async def get(self, task_id: str) -> Task | None:
        data = await self._redis.hget(self._key("task", task_id), "data")
        return None if data is None else decode_task(data)

    async def replace(self, old: Task, new: Task) -> bool:
        check_replace(old, new)
        finished = (
            str(utc_micros(new.finished_at))
            if new.finished_at is not None and new.status.is_terminal
            else ""
        )
        keys = [self._key("task", old.id), self._key("tasks"), self._key("finished")]
        args = [
            self.prefix,
            old.id,
            str(old.version),
            str(new.version),
            encode_task(new),
            new.status.value,
            str(utc_micros(new.created_at)),
            finished,
        ]
        return int(await self._replace(keys=keys, args=args)) == 1

    async def list(self, status: TaskStatus | None = None, limit: int | None = None) -> list[Task]:
        check_limit(limit)
        if limit == 0:
            return []
        index = (
            self._key("tasks") if status is None else self._key("status", TaskStatus(status).value)
        )
        stop = -1 if limit is None else limit - 1
        rows = await self._list(keys=[index], args=[self.prefix, stop])
        return [decode_task(r) for r in rows]

    async def delete(self, task_id: str) -> None:
        self._key()  # raises when closed
        await self._delete(keys=[], args=[self.prefix, task_id])

    async def purge(self, finished_before: datetime) -> int:
        cutoff = str(utc_micros(finished_before))
        total = 0
        while True:
            deleted, seen = await self._purge(
                keys=[self._key("finished")], args=[self.prefix, cutoff, _PURGE_BATCH]
            )
            total += int(deleted)
            if int(seen) < _PURGE_BATCH:
                return total

    async def outbox_put(
        self, topic: str, entry_id: str, data: Mapping[str, Any], due: float
    ) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key("outbox", topic, "data"), entry_id, json.dumps(dict(data)))
            pipe.zadd(self._key("outbox", topic), {entry_id: due})
            await pipe.execute()

    async def outbox_claim(
        self, topic: str, now: float, lease: float, limit: int = 100
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        keys = [self._key("outbox", topic), self._key("outbox", topic, "data")]
        flat = await self._claim(keys=keys, args=[repr(now), repr(now + lease), limit])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return [(_text(i), json.loads(d)) for i, d in pairs if d is not None]

    async def outbox_done(self, topic: str, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._key("outbox", topic), entry_id)
            pipe.hdel(self._key("outbox", topic, "data"), entry_id)
            await pipe.execute()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._redis.aclose()
