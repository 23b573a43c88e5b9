"""The redis backend: topics as Redis Streams, shared by every process.

Per topic ``T`` (keys share the hash tag ``{T}``, for Redis Cluster):

- ``ripple:{T}:s``, the stream: ``XADD ... MAXLEN ~ maxlen N-0 e EPOCH d DATA``,
  where N comes from ``INCR ripple:{T}:n`` in the same Lua script, so the ids
  of a topic are 1, 2, 3... in the order Redis appended them, and a bounded
  history stays in Redis;
- ``ripple:{T}:e``, the epoch: created when missing (Redis lost its data),
  which tells readers holding older ids to resync;
- ``ripple:{T}:p`` and ``ripple:{T}:pd``, presence: a sorted set of deadlines
  (Redis's clock) and a hash of values.

One reader task per process runs ``XREAD BLOCK`` over the topics it watches
(and a wake-up stream of its own, so watching a new topic doesn't wait for
the block to time out) and hands what it reads to the hub, in id order.

redis-py is imported here only: ``pip install 'ripple[redis]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from .base import Backend, Backlog, Entry, HubUnavailable

__all__ = ["RedisBackend"]

logger = logging.getLogger("ripple.hub")

_PUBLISH = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SET', KEYS[3], epoch)
end
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], n .. '-0', 'e', epoch, 'd', ARGV[2])
return {n, epoch}
"""

_STATE = """
if redis.call('SET', KEYS[2], ARGV[1], 'NX') then
  redis.call('DEL', KEYS[1], KEYS[3])
end
return {redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3]) or '0'}
"""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_PRESENT = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
)

_PRESENCE = (
    _NOW
    + """
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
for _, k in ipairs(keys) do
  local v = redis.call('HGET', KEYS[2], k)
  if v then out[#out + 1] = k; out[#out + 1] = v end
end
return out
"""
)

_EXPIRED = (
    _NOW
    + """
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, k in ipairs(keys) do
  redis.call('ZREM', KEYS[1], k)
  local v = redis.call('HGET', KEYS[2], k)
  redis.call('HDEL', KEYS[2], k)
  out[#out + 1] = k; out[#out + 1] = v or ''
end
return out
"""
)

_ABSENT = """
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return n
"""


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


def _id(stream_id: str) -> int:
    return int(stream_id.partition("-")[0])


#: Seconds a command may wait for one of the pool's connections.
POOL_WAIT = 30.0


class RedisBackend(Backend):
    """Topics in Redis Streams.

    Args:
        url: ``redis://host:port/db`` (or ``rediss://``, ``unix://``).
        maxlen: entries kept per topic (about: ``MAXLEN ~``).
        prefix: the first part of every key.
        block: seconds an ``XREAD`` blocks before it's sent again.
        timeout: seconds a command (other than the reader's) may take; a
            publish that fails or times out raises HubUnavailable.
        max_connections: connections to Redis for commands (the reader has
            its own); more commands at once wait for one, in turn (up to
            ``POOL_WAIT`` seconds).
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        maxlen: int = 1000,
        prefix: str = "ripple",
        block: float = 1.0,
        timeout: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        super().__init__()
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"maxlen must be an int >= 1, got {maxlen!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ValueError(f"max_connections must be an int >= 1, got {max_connections!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be an int >= 1, got {max_connections!r}")
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
        except ImportError:
            raise RuntimeError(
                "the redis backend needs redis-py: pip install 'ripple[redis]'"
            ) from None
        self.url = url
        self.maxlen = maxlen
        self.prefix = prefix
        self.block = block
        common: dict[str, Any] = {"decode_responses": True, "socket_connect_timeout": timeout}
        # A burst (hundreds of joins at once) waits for a connection, first
        # come first served, instead of failing: redis-py's default pool
        # raises past 100 connections. The wait is long: a busy process isn't
        # a Redis that's down (each command still has `timeout`).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT,
            queue_class=asyncio.Queue,
            socket_timeout=timeout,
            **common,
        )
        self._redis: Any = Redis.from_pool(pool)
        # The reader blocks in XREAD for up to `block`: give it more time.
        self._reader_redis: Any = Redis.from_url(url, socket_timeout=block + timeout, **common)
        self._publish = self._redis.register_script(_PUBLISH)
        self._state = self._redis.register_script(_STATE)
        self._present = self._redis.register_script(_PRESENT)
        self._presence = self._redis.register_script(_PRESENCE)
        self._expired = self._redis.register_script(_EXPIRED)
        self._absent = self._redis.register_script(_ABSENT)
        self._token = secrets.token_hex(8)
        self._wake_key = f"{prefix}:wake:{self._token}"
        self._wake_last = "0-0"
        # Watched topic -> (epoch known, last id delivered).
        self._watched: dict[str, tuple[str | None, int]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._recheck = False

    def _keys(self, topic: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:{{{topic}}}"
        return f"{base}:s", f"{base}:n", f"{base}:e"

    def _presence_keys(self, topic: str) -> tuple[str, str]:
        base = f"{self.prefix}:{{{topic}}}"
        return f"{base}:p", f"{base}:pd"

    def _stream_topic(self, key: str) -> str:
        return key[len(self.prefix) + 2 : -3]

    # -- status -----------------------------------------------------------------

    def _down(self, exc: BaseException) -> None:
        if self.available:
            self.available = False
            logger.warning("redis at %s is unavailable: %s", self.url, exc or type(exc).__name__)
            if self.on_status is not None:
                self.on_status(False)

    def _up(self) -> None:
        if not self.available:
            self.available = True
            logger.warning("redis at %s is reachable again", self.url)
            if self.on_status is not None:
                self.on_status(True)

    async def _call(self, what: Callable[[], Any]) -> Any:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            result = await what()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._down(exc)
            raise HubUnavailable(f"redis is unavailable: {exc or type(exc).__name__}") from exc
        return result

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        if self._reader is None:
            with contextlib.suppress(HubUnavailable):
                await self._call(self._redis.ping)
            self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        for client in (self._redis, self._reader_redis):
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- topics -----------------------------------------------------------------

    async def publish(self, topic: str, data: str) -> int:
        keys = self._keys(topic)
        n, _epoch = await self._call(
            lambda: self._publish(keys=list(keys), args=[self.maxlen, data, secrets.token_hex(8)])
        )
        return int(n)

    async def _topic_state(self, topic: str) -> tuple[str, int]:
        stream, counter, epoch_key = self._keys(topic)
        epoch, last = await self._call(
            lambda: self._state(keys=[stream, epoch_key, counter], args=[secrets.token_hex(8)])
        )
        return str(epoch), int(last)

    async def watch(self, topic: str) -> Backlog:
        epoch, last = await self._topic_state(topic)
        known = self._watched.get(topic)
        if known is None or known[0] != epoch:
            self._watched[topic] = (epoch, last)
        await self._wake()
        return Backlog(epoch, last)

    async def unwatch(self, topic: str) -> None:
        if self._watched.pop(topic, None) is not None:
            await self._wake()

    async def _wake(self) -> None:
        # Interrupts the reader's XREAD, so it reads the new set of topics.
        async def wake() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=10, approximate=True)
                pipe.expire(self._wake_key, 3600)
                await pipe.execute()

        with contextlib.suppress(HubUnavailable):
            await self._call(wake)

    async def since(self, topic: str, last_id: int, epoch: str | None) -> Backlog:
        current, last = await self._topic_state(topic)
        if (epoch is not None and epoch != current) or last_id > last or last_id < 0:
            return Backlog(current, last, gap=True)
        if last_id == last:
            return Backlog(current, last)
        stream = self._keys(topic)[0]
        items = await self._call(lambda: self._redis.xrange(stream, f"{last_id + 1}-0", "+"))
        entries = self._entries(items, current)
        if not entries or entries[0].id != last_id + 1:
            return Backlog(current, last, gap=True)
        # Entries appended after the state was read are delivered live.
        return Backlog(current, last, [e for e in entries if e.id <= last])

    @staticmethod
    def _entries(items: list[Any], epoch: str | None) -> list[Entry]:
        out = []
        for stream_id, fields in items:
            if epoch is not None and fields.get("e") != epoch:
                continue
            out.append(Entry(_id(stream_id), str(fields.get("d", ""))))
        return out

    async def recent(
        self, topic: str, count: int, keep: Callable[[str], bool] | None = None
    ) -> Backlog:
        epoch, last = await self._topic_state(topic)
        stream = self._keys(topic)[0]
        found: list[Entry] = []
        top = f"{last}-0"
        page = max(count * 2, 100)
        while count > 0 and len(found) < count:
            items = await self._call(
                lambda top=top: self._redis.xrevrange(stream, top, "-", count=page)  # type: ignore[misc]
            )
            for entry in self._entries(items, epoch):
                if keep is None or keep(entry.data):
                    found.append(entry)
                    if len(found) == count:
                        break
            if len(items) < page:
                break
            top = f"{_id(items[-1][0]) - 1}-0"
            if top == "0-0":
                break
        found.reverse()
        return Backlog(epoch, last, found)

    # -- the reader -------------------------------------------------------------

    async def _read_forever(self) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        delay = 0.05
        while True:
            try:
                if self._recheck:
                    await self._check_epochs()
                    self._recheck = False
                streams: dict[str, str] = {self._wake_key: self._wake_last}
                for topic, (_epoch, last) in self._watched.items():
                    streams[self._keys(topic)[0]] = f"{last}-0"
                block_ms = max(1, int(self.block * 1000))
                reply = await self._reader_redis.xread(streams, count=1000, block=block_ms)
                self._up()
                delay = 0.05
                self._dispatch(reply or [])
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, OSError, HubUnavailable) as exc:
                self._down(exc)
                self._recheck = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                logger.exception("the redis reader failed; starting it again")
                self._recheck = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _check_epochs(self) -> None:
        # After losing the connection: a topic whose epoch changed (Redis lost
        # its data) is read again from its start, in its new epoch.
        for topic in list(self._watched):
            epoch_key = self._keys(topic)[2]
            epoch = await self._reader_redis.get(epoch_key)
            known = self._watched.get(topic)
            if known is not None and epoch != known[0]:
                logger.warning("topic %r lost its history (new epoch); reading it again", topic)
                self._watched[topic] = (epoch, 0)

    def _dispatch(self, reply: Any) -> None:
        # RESP2 gives [[key, items]...]; RESP3 a dict.
        pairs = reply.items() if isinstance(reply, dict) else reply
        for key, items in pairs:
            if not items:
                continue
            if key == self._wake_key:
                self._wake_last = items[-1][0]
                continue
            topic = self._stream_topic(key)
            known = self._watched.get(topic)
            if known is None:
                continue
            epoch, last = known
            batch: list[Entry] = []
            for stream_id, fields in items:
                n = _id(stream_id)
                entry_epoch = fields.get("e")
                if entry_epoch != epoch:
                    if batch:
                        self._deliver(topic, epoch, batch)
                        batch = []
                    epoch = entry_epoch
                elif n <= last:
                    continue
                last = n
                batch.append(Entry(n, str(fields.get("d", ""))))
            self._watched[topic] = (epoch, last)
            if batch:
                self._deliver(topic, epoch, batch)

    def _deliver(self, topic: str, epoch: str | None, entries: list[Entry]) -> None:
        if self.on_entries is not None and epoch is not None:
            try:
                self.on_entries(topic, epoch, entries)
            except Exception:
                logger.exception("delivering %d entries of %r failed", len(entries), topic)

    # -- presence ---------------------------------------------------------------

    async def present(self, topic: str, key: str, value: str, ttl: float) -> None:
        keys = list(self._presence_keys(topic))
        await self._call(lambda: self._present(keys=keys, args=[key, value, int(ttl * 1000)]))

    async def absent(self, topic: str, key: str) -> bool:
        keys = list(self._presence_keys(topic))
        return bool(await self._call(lambda: self._absent(keys=keys, args=[key])))

    async def presence(self, topic: str) -> dict[str, str]:
        keys = list(self._presence_keys(topic))
        return _pairs(await self._call(lambda: self._presence(keys=keys, args=[])))

    async def expired(self, topic: str) -> dict[str, str]:
        keys = list(self._presence_keys(topic))
        return _pairs(await self._call(lambda: self._expired(keys=keys, args=[])))
