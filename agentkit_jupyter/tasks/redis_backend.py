"""The backend interfaces (``backend.py``) on Redis Streams, with ``redis.asyncio``.

Layout, every key under one prefix (``agentkit:`` by default; see docs/scale-out.md):

- ``task:<id>``: a hash, the task's record, one JSON value per field;
- ``task:<id>:events``: a stream, the task's log; entry ``<seq>-0`` holds message
  ``seq`` (field ``m``), so ``?after=N`` is one ``XREAD`` from ``N-0``, and Redis
  itself refuses a second ``<seq>-0`` (an id at or below the stream's top);
- ``task:<id>:control``: a stream, the commands to the run; entry ``<n>-0`` is
  command ``n``; ``task:<id>:control-keys`` maps a sender's key to its number,
  ``task:<id>:decided`` a tool call to the approve or reject that decided it;
- ``task:<id>:writer``: the fencing token of the log's current writer (a worker's
  lease number): appends with an older one are refused;
- ``tasks``: a sorted set, every task by creation time (the list);
  ``tasks:finished``: the finished ones, by creation time (retention);
- ``queue``: a stream of tasks waiting for a worker, consumer group ``workers``:
  a worker takes one with ``XREADGROUP``; ``XAUTOCLAIM`` hands a task whose lease
  lapsed (its worker died) to another.

Checks that need several commands to agree (no gap, create once, numbering) run as
Lua scripts, which Redis runs atomically. One Redis primary is the target (with
replicas or Sentinel); a Cluster is not: the scripts touch keys of several slots.

Needs the ``redis`` package (``pip install 'agentkit-jupyter[redis]'``); nothing
imports this module unless a Redis backend is asked for.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - the default install has no Redis
    raise ImportError(
        "The Redis backend needs the redis package: pip install 'agentkit-jupyter[redis]'"
    ) from exc

import agentkit_jupyter.protocol as protocol

from ..protocol import TaskStatus
from .backend import (
    CONTROL_KEPT,
    DELETED_KEPT_SECONDS,
    RETENTION_MAX_AGE_SECONDS,
    RETENTION_MAX_COUNT,
    BackendUnavailableError,
    CallDecidedError,
    ControlEnvelope,
    DuplicateSeqError,
    EventsTrimmedError,
    Lease,
    ListCursor,
    RecordPage,
    RunCommand,
    SeqGapError,
    StaleWriterError,
    TaskDeletedError,
    TaskExistsError,
    command_from_json,
    command_to_json,
    decided_call,
)
from .log import LogEntry

DEFAULT_PREFIX = "agentkit:"
WORKER_GROUP = "workers"
# The longest one command may take beyond its own blocking time before the backend
# counts as unreachable (a network cut sends no reset: without it a read would hang).
COMMAND_TIMEOUT_SECONDS = 5.0
DEFAULT_LEASE_SECONDS = 30.0

T = TypeVar("T")

# KEYS[1] the events stream, KEYS[2] its fencing token, KEYS[3] the task's deletion
# mark; ARGV[1] the first seq,
# ARGV[2] MAXLEN ('' for none), ARGV[3] the writer's token ('' for none), ARGV[4..]
# the messages. A stale writer and a gap are refused here; a duplicate by XADD itself.
_APPEND = """
if redis.call('EXISTS', KEYS[3]) == 1 then return redis.error_reply('DELETED') end
if ARGV[3] ~= '' then
  local current = tonumber(redis.call('GET', KEYS[2]) or '0')
  if tonumber(ARGV[3]) < current then return redis.error_reply('STALE ' .. current) end
end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if top[1] then last = tonumber(string.match(top[1][1], '^%d+')) end
local first = tonumber(ARGV[1])
if first > last + 1 then return redis.error_reply('GAP ' .. last) end
for i = 4, #ARGV do
  redis.call('XADD', KEYS[1], (first + i - 4) .. '-0', 'm', ARGV[i])
end
if ARGV[2] ~= '' then redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2]) end
return last
"""

# KEYS[1] a task's fencing token; ARGV[1] a writer's. The token only grows.
_FENCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local writer = tonumber(ARGV[1])
if writer > current then
  redis.call('SET', KEYS[1], writer)
  return writer
end
return current
"""

# KEYS[1] the record, KEYS[2] the list, KEYS[3] the finished list, KEYS[4] the
# deletion mark (a deleted id is not created again); ARGV[1] the id,
# ARGV[2] created_at, ARGV[3] '1' if finished, ARGV[4..] field, value, ...
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[3] == '1' then redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1]) end
return 1
"""

# KEYS[1] the record, KEYS[2] the finished list; ARGV[1] the id, ARGV[2] '1' if the
# update finishes the task, ARGV[3..] field, value, ...
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'created_at'), ARGV[1])
end
return 1
"""

# KEYS[1] a task's whole texts, KEYS[2] its deletion mark; ARGV[1] a seq, ARGV[2]
# the text. Refused for a deleted task (it would bring back a key nobody deletes).
_KEEP_WHOLE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return redis.error_reply('DELETED') end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS[1] the record; ARGV[1] a field, ARGV[2] its JSON value. Set unless it holds a
# value (JSON null is none); the field's value after, or nil without a record.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and current ~= 'null' then return current end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
"""

# KEYS[1] the control stream, KEYS[2] its keys, KEYS[3] its decided calls, KEYS[4]
# the task's deletion mark; ARGV[1] the sender's key ('' none), ARGV[2] the envelope,
# ARGV[3] how many to keep, ARGV[4] the call an approve or reject decides ('').
# Returns the command's number, minus the number of the command that decided the
# call already, or 0 for a deleted task.
_SEND = """
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if ARGV[1] ~= '' then
  local known = redis.call('HGET', KEYS[2], ARGV[1])
  if known then return tonumber(known) end
end
if ARGV[4] ~= '' then
  local decided = redis.call('HGET', KEYS[3], ARGV[4])
  if decided then return -tonumber(decided) end
end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local n = 1
if top[1] then n = tonumber(string.match(top[1][1], '^%d+')) + 1 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], n .. '-0', 'c', ARGV[2])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], n) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[4], n) end
return n
"""

# KEYS[1] the queue; ARGV[1] the group, ARGV[2] the worker, ARGV[3] the entry id,
# ARGV[4] 'renew' or 'done'. Only the lease's holder may do either.
_LEASE = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not pending[1] or pending[1][2] ~= ARGV[2] then return 0 end
if ARGV[4] == 'renew' then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
else
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Every key of the layout (see the module's docstring), under ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    def record(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def events(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:events"

    def control(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:control"

    def control_keys(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:control-keys"

    def decided(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:decided"

    def writer(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:writer"

    def wholes(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:whole"

    def gone(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}:gone"

    @property
    def index(self) -> str:
        return f"{self.prefix}tasks"

    @property
    def finished(self) -> str:
        return f"{self.prefix}tasks:finished"

    @property
    def queue(self) -> str:
        return f"{self.prefix}queue"


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for ``url`` (``redis://host:port/db``) that fails fast when Redis is
    gone: two quick reconnects, then an error, and no socket timeout of its own
    (blocking reads would trip it; each call has a deadline instead). ``options``
    go to ``redis.asyncio.Redis`` (``protocol=3``, ``max_connections``, ...)."""
    settings: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": COMMAND_TIMEOUT_SECONDS,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    }
    return aioredis.Redis.from_url(url, **{**settings, **options})


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _finished(status: Any) -> bool:
    return isinstance(status, str) and TaskStatus(status).finished


def _envelope(entry_id: bytes, fields: dict[bytes, bytes]) -> ControlEnvelope:
    data = json.loads(fields[b"c"])
    return ControlEnvelope(
        _seq_of(entry_id), command_from_json(data["command"]), data["by"], data["key"]
    )


def _fields(record: dict[str, Any]) -> list[str]:
    """A record as HSET arguments: each value JSON (as the SQLite history stores a
    result: ``protocol.dumps``, strict JSON and valid text), so a record round-trips."""
    pairs: list[str] = []
    for name, value in record.items():
        pairs += [name, protocol.dumps(value)]
    return pairs


class _RedisBase:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)

    @asynccontextmanager
    async def _guard(self, block: float | None = None) -> AsyncIterator[None]:
        """Redis unreachable (refused, reset, silent): BackendUnavailableError within
        the command's deadline, never a hang."""
        deadline = COMMAND_TIMEOUT_SECONDS + (block or 0.0)
        try:
            async with asyncio.timeout(deadline):
                yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BackendUnavailableError(f"Redis is unreachable: {exc}") from exc
        except TimeoutError as exc:
            raise BackendUnavailableError(f"Redis did not answer within {deadline:.1f} s") from exc

    async def _call(self, call: Callable[[], Awaitable[T]], block: float | None = None) -> T:
        async with self._guard(block):
            return await call()


class RedisBackend(_RedisBase):
    """Registry, event logs and control on Redis (``backend.TaskBackend``).

    ``max_events_per_task`` caps each stream (approximately, ``MAXLEN ~``); None
    keeps every event, as the SQLite history does.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = DEFAULT_PREFIX,
        max_events_per_task: int | None = None,
    ) -> None:
        super().__init__(client, prefix)
        self.max_events_per_task = max_events_per_task
        self._append = client.register_script(_APPEND)
        self._fence = client.register_script(_FENCE)
        self._create = client.register_script(_CREATE)
        self._update = client.register_script(_UPDATE)
        self._claim = client.register_script(_CLAIM)
        self._keep_whole = client.register_script(_KEEP_WHOLE)
        self._send = client.register_script(_SEND)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX, **options: Any) -> RedisBackend:
        return cls(connect(url), prefix, **options)

    async def close(self) -> None:
        await self.client.aclose()

    # -- registry -----------------------------------------------------------------------

    async def create(self, record: dict[str, Any]) -> None:
        task_id = str(record["task_id"])
        keys = [self.keys.record(task_id), self.keys.index, self.keys.finished]
        keys.append(self.keys.gone(task_id))
        args = [task_id, repr(float(record["created_at"]))]
        args += ["1" if _finished(record.get("status")) else "0", *_fields(record)]
        created = await self._call(lambda: self._create(keys, args))
        if not created:
            raise TaskExistsError(task_id)

    async def get(self, task_id: str) -> dict[str, Any] | None:
        raw = await self._call(lambda: self._hgetall(self.keys.record(task_id)))
        return {_text(k): json.loads(v) for k, v in raw.items()} if raw else None

    async def _hgetall(self, key: str) -> dict[bytes, bytes]:
        return cast(dict[bytes, bytes], await self.client.hgetall(key))

    async def update(self, task_id: str, fields: dict[str, Any]) -> bool:
        if not fields:
            return await self._call(lambda: self._exists(self.keys.record(task_id)))
        keys = [self.keys.record(task_id), self.keys.finished]
        args = [task_id, "1" if _finished(fields.get("status")) else "0", *_fields(fields)]
        return bool(await self._call(lambda: self._update(keys, args)))

    async def claim(self, task_id: str, field: str, value: Any) -> Any:
        keys, args = [self.keys.record(task_id)], [field, protocol.dumps(value)]
        raw = await self._call(lambda: self._claim(keys, args))
        return None if raw is None else json.loads(raw)

    async def _exists(self, key: str) -> bool:
        return bool(await self.client.exists(key))

    async def page(self, limit: int = 100, after: ListCursor | None = None) -> RecordPage:
        ids = await self._call(lambda: self._ids_after(limit + 1, after))
        more = len(ids) > limit
        async with self._guard():
            pipe = self.client.pipeline(transaction=False)
            for task_id in ids[:limit]:
                pipe.hgetall(self.keys.record(task_id))
            rows = cast(list[dict[bytes, bytes]], await pipe.execute())
        # A record deleted since the index was read is left out.
        records = [{_text(k): json.loads(v) for k, v in row.items()} for row in rows if row]
        last = records[-1] if more and records else None
        cursor = ListCursor(last["created_at"], last["task_id"]) if last else None
        return RecordPage(records, cursor)

    async def _ids_after(self, count: int, after: ListCursor | None) -> list[str]:
        """Up to ``count`` ids after ``after`` in (created_at, id) order: ties in the
        score are ordered by member, so a page starts at the cursor's score and skips
        what is not after it."""
        low: float | str = after.created_at if after is not None else "-inf"
        ids: list[str] = []
        offset = 0
        while len(ids) < count:
            rows = cast(
                list[tuple[bytes, float]],
                await self.client.zrange(
                    self.keys.index,
                    low,
                    "+inf",
                    byscore=True,
                    withscores=True,
                    offset=offset,
                    num=count,
                ),
            )
            if not rows:
                break
            offset += len(rows)
            for member, score in rows:
                task_id = _text(member)
                if after is None or (score, task_id) > (after.created_at, after.task_id):
                    ids.append(task_id)
        return ids[:count]

    async def delete(self, task_id: str) -> None:
        async with self._guard():
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(
                self.keys.record(task_id),
                self.keys.events(task_id),
                self.keys.control(task_id),
                self.keys.control_keys(task_id),
                self.keys.decided(task_id),
                self.keys.writer(task_id),
                self.keys.wholes(task_id),
            )
            pipe.zrem(self.keys.index, task_id)
            pipe.zrem(self.keys.finished, task_id)
            pipe.set(self.keys.gone(task_id), b"1", ex=DELETED_KEPT_SECONDS)
            await pipe.execute()

    async def known(self, task_id: str) -> bool:
        keys = (self.keys.record(task_id), self.keys.gone(task_id))
        return bool(await self._call(lambda: self.client.exists(*keys)))

    async def apply_retention(
        self,
        max_age_seconds: float | None = RETENTION_MAX_AGE_SECONDS,
        max_count: int | None = RETENTION_MAX_COUNT,
        now: float | None = None,
    ) -> list[str]:
        now = time.time() if now is None else now
        finished = self.keys.finished
        doomed: set[str] = set()
        async with self._guard():
            if max_age_seconds is not None:
                # "(": strictly older than the age, as TaskHub.apply_retention compares.
                old = await self.client.zrange(
                    finished, "-inf", f"({now - max_age_seconds!r}", byscore=True
                )
                doomed.update(_text(m) for m in cast(list[bytes], old))
            if max_count is not None:
                excess = int(await self.client.zcard(finished)) - max_count
                if excess > 0:
                    oldest = await self.client.zrange(finished, 0, excess - 1)
                    doomed.update(_text(m) for m in cast(list[bytes], oldest))
        for task_id in doomed:
            await self.delete(task_id)
        return sorted(doomed)

    # -- event logs ---------------------------------------------------------------------

    async def append(self, task_id: str, seq: int, data: bytes, writer: int | None = None) -> None:
        await self.append_many(task_id, seq, [data], writer)

    async def append_many(
        self, task_id: str, first_seq: int, data: Sequence[bytes], writer: int | None = None
    ) -> None:
        if not data:
            return
        cap = "" if self.max_events_per_task is None else str(self.max_events_per_task)
        args: list[Any] = [first_seq, cap, "" if writer is None else writer, *data]
        keys = [self.keys.events(task_id), self.keys.writer(task_id), self.keys.gone(task_id)]
        try:
            await self._call(lambda: self._append(keys, args))
        except ResponseError as exc:
            message = str(exc)
            if message == "DELETED":
                raise TaskDeletedError(task_id) from None
            if "equal or smaller" in message:
                raise DuplicateSeqError(task_id, first_seq) from None
            if message.startswith("GAP "):
                raise SeqGapError(task_id, first_seq, int(message.split()[1])) from None
            if message.startswith("STALE ") and writer is not None:
                raise StaleWriterError(task_id, writer, int(message.split()[1])) from None
            raise

    async def keep_whole(self, task_id: str, seq: int, data: bytes) -> None:
        keys = [self.keys.wholes(task_id), self.keys.gone(task_id)]
        try:
            await self._call(lambda: self._keep_whole(keys, [seq, data]))
        except ResponseError as exc:
            if str(exc) == "DELETED":
                raise TaskDeletedError(task_id) from None
            raise

    async def read_whole(self, task_id: str, seq: int) -> bytes | None:
        key = self.keys.wholes(task_id)
        return cast(bytes | None, await self._call(lambda: self.client.hget(key, str(seq))))

    async def _read_stream(
        self, key: str, after: int, limit: int, block: float | None
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """The entries of stream ``key`` after id ``<after>-0`` (one ``XREAD``, waiting
        up to ``block`` seconds for the first)."""
        wait = int(block * 1000) if block else None
        reply = await self._call(
            lambda: self.client.xread({key: f"{after}-0"}, count=limit, block=wait), block
        )
        if not reply:
            return []
        # RESP2 and RESP3 answer differently: [[key, entries]] or {key: [entries]}.
        return cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            reply[key.encode()][0] if isinstance(reply, dict) else reply[0][1],
        )

    async def _read_streams(
        self, after: Mapping[str, int], limit: int, block: float | None
    ) -> dict[str, list[tuple[bytes, dict[bytes, bytes]]]]:
        """The entries of each stream (key -> after) after id ``<after>-0``, in one
        ``XREAD`` over all of them, waiting up to ``block`` seconds for the first."""
        if not after:
            return {}
        wait = int(block * 1000) if block else None
        streams = {key: f"{seq}-0" for key, seq in after.items()}
        reply = await self._call(
            lambda: self.client.xread(streams, count=limit, block=wait),  # type: ignore[arg-type]
            block,
        )
        if not reply:
            return {}
        # RESP2 and RESP3 answer differently: [[key, entries], ...] or {key: [entries]}.
        pairs = [(k, v[0]) for k, v in reply.items()] if isinstance(reply, dict) else reply
        return {
            _text(key): cast(list[tuple[bytes, dict[bytes, bytes]]], entries)
            for key, entries in pairs
        }

    async def read_many(
        self, after: Mapping[str, int], limit: int = 500, block: float | None = None
    ) -> dict[str, list[LogEntry]]:
        by_key = {self.keys.events(task_id): task_id for task_id in after}
        found = await self._read_streams(
            {key: after[task_id] for key, task_id in by_key.items()}, limit, block
        )
        return {
            by_key[key]: [LogEntry(_seq_of(i), fields[b"m"]) for i, fields in entries]
            for key, entries in found.items()
            if entries
        }

    async def receive_many(
        self, after: Mapping[str, int], limit: int = 100, block: float | None = None
    ) -> dict[str, list[ControlEnvelope]]:
        by_key = {self.keys.control(task_id): task_id for task_id in after}
        found = await self._read_streams(
            {key: after[task_id] for key, task_id in by_key.items()}, limit, block
        )
        return {
            by_key[key]: [_envelope(i, fields) for i, fields in entries]
            for key, entries in found.items()
            if entries
        }

    async def fence(self, task_id: str, writer: int) -> int:
        key = self.keys.writer(task_id)
        return int(await self._call(lambda: self._fence([key], [writer])))

    async def read_after(
        self, task_id: str, after: int, limit: int = 500, block: float | None = None
    ) -> list[LogEntry]:
        found = await self._read_stream(self.keys.events(task_id), after, limit, block)
        entries = [LogEntry(_seq_of(entry_id), fields[b"m"]) for entry_id, fields in found]
        if entries and entries[0].seq != after + 1:
            raise EventsTrimmedError(task_id, after, entries[0].seq)
        return entries

    async def last_seq(self, task_id: str) -> int:
        key = self.keys.events(task_id)
        top = cast(
            list[tuple[bytes, Any]], await self._call(lambda: self.client.xrevrange(key, count=1))
        )
        return _seq_of(top[0][0]) if top else 0

    async def first_seq(self, task_id: str) -> int:
        key = self.keys.events(task_id)
        oldest = cast(
            list[tuple[bytes, Any]], await self._call(lambda: self.client.xrange(key, count=1))
        )
        return _seq_of(oldest[0][0]) if oldest else await self.last_seq(task_id) + 1

    async def trim(self, task_id: str, keep_last: int) -> int:
        key = self.keys.events(task_id)
        dropped = await self._call(
            lambda: self.client.xtrim(key, maxlen=max(keep_last, 1), approximate=False)
        )
        return int(dropped)

    # -- control ------------------------------------------------------------------------

    async def send(
        self, task_id: str, command: RunCommand, by: str | None, key: str | None = None
    ) -> int:
        envelope = json.dumps({"command": command_to_json(command), "by": by, "key": key})
        keys = [self.keys.control(task_id), self.keys.control_keys(task_id)]
        keys += [self.keys.decided(task_id), self.keys.gone(task_id)]
        call_id = decided_call(command)
        args = [key or "", envelope, str(CONTROL_KEPT), call_id or ""]
        number = int(await self._call(lambda: self._send(keys, args)))
        if number == 0:
            raise TaskDeletedError(task_id)
        if number < 0:
            assert call_id is not None
            raise CallDecidedError(task_id, call_id, -number)
        return number

    async def receive(
        self, task_id: str, after: int, limit: int = 100, block: float | None = None
    ) -> list[ControlEnvelope]:
        found = await self._read_stream(self.keys.control(task_id), after, limit, block)
        return [_envelope(entry_id, fields) for entry_id, fields in found]


class RedisWorkQueue(_RedisBase):
    """Tasks for workers (``backend.WorkQueue``): a stream read through a consumer
    group; a lease is an entry pending for one worker, its clock the entry's idle
    time, which ``renew`` resets (``XCLAIM ... JUSTID``) and ``XAUTOCLAIM`` checks."""

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = DEFAULT_PREFIX,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        group: str = WORKER_GROUP,
    ) -> None:
        super().__init__(client, prefix)
        self.lease_seconds = lease_seconds
        self.group = group
        self._lease = client.register_script(_LEASE)
        self._group_ready = False

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            queue, group = self.keys.queue, self.group
            await self._call(lambda: self.client.xgroup_create(queue, group, id="0", mkstream=True))
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # made already (by another worker): fine
                raise
        self._group_ready = True

    async def enqueue(self, task_id: str) -> str:
        await self._ensure_group()
        entry_id = await self._call(lambda: self.client.xadd(self.keys.queue, {"task": task_id}))
        return _text(entry_id)

    async def take(self, worker: str, block: float | None = None) -> Lease | None:
        await self._ensure_group()
        lapsed = await self._claim_lapsed(worker)
        if lapsed is not None:
            return lapsed
        wait = int(block * 1000) if block else None
        queue = self.keys.queue
        reply = await self._call(
            lambda: self.client.xreadgroup(self.group, worker, {queue: ">"}, count=1, block=wait),
            block,
        )
        if not reply:
            return None
        found = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            reply[queue.encode()][0] if isinstance(reply, dict) else reply[0][1],
        )
        entry_id, fields = found[0]
        return Lease(_text(fields[b"task"]), _text(entry_id), worker, 1)

    async def _claim_lapsed(self, worker: str) -> Lease | None:
        """Take over the first entry idle longer than a lease (its worker is gone)."""
        idle_ms = int(self.lease_seconds * 1000)
        start = "0-0"
        while True:
            async with self._guard():
                reply = await self.client.xautoclaim(
                    self.keys.queue, self.group, worker, idle_ms, start_id=start, count=1
                )
            start, claimed = _text(reply[0]), reply[1]
            if claimed:
                entry_id, fields = claimed[0]
                deliveries = await self._deliveries(entry_id)
                return Lease(_text(fields[b"task"]), _text(entry_id), worker, deliveries)
            if start == "0-0":  # the whole pending list was looked at
                return None

    async def _deliveries(self, entry_id: bytes) -> int:
        rows = await self._call(
            lambda: self.client.xpending_range(self.keys.queue, self.group, entry_id, entry_id, 1)
        )
        return int(rows[0]["times_delivered"]) if rows else 1

    async def renew(self, lease: Lease) -> bool:
        return await self._holder(lease, "renew")

    async def done(self, lease: Lease) -> bool:
        return await self._holder(lease, "done")

    async def _holder(self, lease: Lease, action: str) -> bool:
        args = [self.group, lease.worker, lease.entry_id, action]
        return bool(await self._call(lambda: self._lease([self.keys.queue], args)))
