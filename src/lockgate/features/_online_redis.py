"""The online store on Redis: one hash per entity, expiring when its value goes stale.

Keys are ``{prefix}fv:{view}:{version}:{entity}``; each hash holds the features (as text)
beside ``:et`` and ``:ct``, the event and created time in microseconds (field names no feature
can have). A hash expires at its event time plus the view's ttl, so Redis drops stale values
by itself: a value already past its ttl when written is not stored at all. That makes the
``last_known`` policy answer ``missing`` on Redis once the ttl has passed, where SQLite would
still answer the stale value.

Writes go through one Lua script per chunk of entities, which compares event and created time
with the stored ones and replaces only older values, so concurrent writers and repeated
materializations never move a value back in time. A chunk is atomic; a whole write is not: if
Redis fails part-way, the chunks already sent stay (each one is a valid, newer value) and the
watermark does not move, so running the materialization again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockgate.clock import now_millis
from lockgate.config import redact_uri
from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.features._definitions import FeatureView
from lockgate.features._online_base import CT, ET, OnlineStoreBase, Progress, ViewLayout, from_micros

__all__ = ["RedisOnlineStore"]

_CHUNK = 2_000
_CONNECT_TIMEOUT_S = 2.0
_TIMEOUT_S = 5.0
_ET = ":et"

# KEYS: the entity hashes. ARGV: the number of features n, their names, then one blob per
# column (event time, created time, expiry in ms, then each feature), holding one value per
# key separated by the byte 0xFF; a null value is the lone byte 0xFE. Neither byte occurs in
# UTF-8 text, so no value needs escaping, and redis-py packs a dozen arguments per chunk
# instead of one per value (which cost more than Redis's own work).
_WRITE_NEWER = """
local n = #KEYS
local function split(blob)
  local out, pos = {}, 1
  for i = 1, n do
    local j = string.find(blob, '\\255', pos, true)
    if j then
      out[i] = string.sub(blob, pos, j - 1)
      pos = j + 1
    else
      out[i] = string.sub(blob, pos)
    end
  end
  return out
end
local nf = tonumber(ARGV[1])
local ets, cts, exps = split(ARGV[nf + 2]), split(ARGV[nf + 3]), split(ARGV[nf + 4])
local cols = {}
for j = 1, nf do
  cols[j] = split(ARGV[nf + 4 + j])
end
local written = 0
for k = 1, n do
  local et = tonumber(ets[k])
  local ct = tonumber(cts[k])
  local cur = redis.call('HMGET', KEYS[k], ':et', ':ct')
  local newer = true
  if cur[1] then
    local cet = tonumber(cur[1])
    newer = et > cet or (et == cet and ct > tonumber(cur[2] or '0'))
  end
  if newer then
    local fields = {':et', ets[k], ':ct', cts[k]}
    for j = 1, nf do
      local v = cols[j][k]
      if v ~= '\\254' then
        fields[#fields + 1] = ARGV[1 + j]
        fields[#fields + 1] = v
      end
    end
    redis.call('DEL', KEYS[k])
    redis.call('HSET', KEYS[k], unpack(fields))
    redis.call('PEXPIREAT', KEYS[k], exps[k])
    written = written + 1
  end
end
return written
"""

# One round trip and one reply for a many-entity read: a pipeline of HMGETs costs redis-py
# tens of microseconds per command to pack and parse.
_READ_MANY = """
local out = {}
for k = 1, #KEYS do
  out[k] = redis.call('HMGET', KEYS[k], unpack(ARGV))
end
return out
"""

# A materialization only moves the watermark forward: of two running at once, the one that
# finishes last may have the earlier end.
_ADVANCE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


def _reason(exc: Exception, timeout: float = _TIMEOUT_S) -> str:
    """redis-py's message as a clause: "Error 111 connecting to h:p. Connection refused." reads
    as two sentences, and the URL is already named."""
    if isinstance(exc, redis.TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc).strip().rstrip(".")
    if " connecting to " in text and ". " in text:
        text = text.split(". ", 1)[1]
    return text.replace(". ", ", ")


def _decoder(t: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_floating(t):
        return float
    if pa.types.is_boolean(t):
        return lambda b: b == b"true"
    if pa.types.is_integer(t):
        return int
    if pa.types.is_timestamp(t):
        return lambda b: from_micros(int(b))
    return lambda b: b.decode()


_SEPARATOR = pa.scalar(b"\xff", pa.binary())
_NULL = pa.scalar(b"\xfe", pa.binary())


def _blob(column: pa.ChunkedArray) -> bytes:
    """A column as text values joined by 0xFF, nulls as 0xFE (see the write script)."""
    # float32 goes through float64 so Redis stores the same number SQLite does.
    if pa.types.is_float32(column.type):
        column = column.cast(pa.float64())
    values = pc.fill_null(column.cast(pa.string()).cast(pa.binary()), _NULL).combine_chunks()
    as_list = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
    joined: bytes = pc.binary_join(as_list, _SEPARATOR)[0].as_py()
    return joined


class _Keys:
    """The key names and field codecs of one view version."""

    def __init__(self, layout: ViewLayout, prefix: str) -> None:
        self.base = f"{prefix}fv:{layout.name}:{layout.version}:"
        self.single_key = layout.single_key
        self.decoders = {f: _decoder(layout.types[f]) for f in layout.features}
        self._fields: dict[tuple[str, ...], tuple[list[str], list[Callable[[Any], Any]]]] = {}

    def key(self, entity: Any) -> str:
        if self.single_key:
            return self.base + str(entity)
        # Length-prefixed parts, so no value can forge another's key whatever it contains.
        return self.base + "".join(f"{len(s)}:{s}," for s in map(str, entity))

    def fields(self, features: tuple[str, ...]) -> tuple[list[str], list[Callable[[Any], Any]]]:
        found = self._fields.get(features)
        if found is None:
            found = self._fields[features] = ([*features, _ET], [self.decoders[f] for f in features])
        return found


class RedisOnlineStore(OnlineStoreBase):
    """Online features in Redis, under a key prefix (``?prefix=`` in the URL, ``lockgate:`` by default)."""

    backend: ClassVar[str] = "redis"

    def __init__(self, *, url: str) -> None:
        super().__init__()
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.prefix = next((v for k, v in query if k == "prefix"), "lockgate:")
        client_url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"])))
        self.url = redact_uri(url)
        if parts.scheme in ("redis", "rediss") and not parts.path.strip("/").isdigit() and parts.path.strip("/"):
            raise InvalidInputError(
                f"the online store URL {self.url} names database {parts.path!r}; use a number, e.g. /0"
            )
        self._watermarks = f"{self.prefix}watermarks"
        self._views: dict[tuple[str, str], _Keys] = {}
        try:
            probe = redis.Redis.from_url(
                client_url,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                socket_timeout=_CONNECT_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise InvalidInputError(f"the online store URL {self.url} does not parse ({exc})") from None
        try:
            probe.ping()
        except redis.AuthenticationError as exc:
            raise UnavailableError(
                f"the online store at {self.url} refused the credentials ({_reason(exc, _CONNECT_TIMEOUT_S)}); fix them in online_store_url"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise UnavailableError(
                f"the online store at {self.url} does not answer ({_reason(exc, _CONNECT_TIMEOUT_S)}); start Redis there or fix online_store_url"
            ) from None
        except redis.RedisError as exc:
            raise UnavailableError(
                f"the online store at {self.url} refused the connection ({_reason(exc, _CONNECT_TIMEOUT_S)}); fix online_store_url"
            ) from None
        finally:
            probe.close()
        # One quick retry lets a pooled connection recover from a Redis restart.
        self._client = redis.Redis.from_url(
            client_url,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_timeout=_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
        )
        self._write_newer = self._client.register_script(_WRITE_NEWER)
        self._read_many = self._client.register_script(_READ_MANY)
        self._advance = self._client.register_script(_ADVANCE)

    def _keys(self, layout: ViewLayout) -> _Keys:
        keys = self._views.get((layout.name, layout.version))
        if keys is None:
            keys = self._views[(layout.name, layout.version)] = _Keys(layout, self.prefix)
        return keys

    def _unavailable(self, exc: Exception) -> UnavailableError:
        return UnavailableError(f"the online store at {self.url} failed ({_reason(exc)}); check that Redis is up")

    # -- the primitives -----------------------------------------------------------------------------

    def _fetch(self, layout: ViewLayout, keys: list[Any], features: tuple[str, ...]) -> list[Sequence[Any] | None]:
        names = self._keys(layout)
        fields, decoders = names.fields(features)
        try:
            if len(keys) == 1:
                replies = [self._client.hmget(names.key(keys[0]), fields)]
            else:
                replies = []
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    replies.extend(self._read_many(keys=[names.key(k) for k in chunk], args=fields))
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        records: list[Sequence[Any] | None] = []
        append = records.append
        for reply in replies:
            et = reply[-1]
            if et is None:
                append(None)
            else:
                values = [None if v is None else dec(v) for dec, v in zip(decoders, reply, strict=False)]
                values.append(int(et))
                append(values)
        return records

    def _upsert(self, layout: ViewLayout, latest: pa.Table, *, watermark_us: int | None, progress: Progress) -> int:
        names = self._keys(layout)
        expire_ms = pc.divide(pc.add(latest.column(ET), layout.ttl_us), 1000)
        # Already past its ttl: Redis would drop it at once, so it is not sent.
        alive = pc.greater(expire_ms, now_millis())
        latest = latest.append_column("@expire", expire_ms).filter(alive)
        features = list(layout.features)
        written = 0
        try:
            for start in range(0, latest.num_rows, _CHUNK):
                chunk = latest.slice(start, _CHUNK)
                if layout.single_key:
                    entities: list[Any] = chunk.column(layout.keys[0]).to_pylist()
                else:
                    entities = list(zip(*[chunk.column(k).to_pylist() for k in layout.keys], strict=True))
                blobs = [_blob(chunk.column(c)) for c in (ET, CT, "@expire", *features)]
                keys = [names.key(e) for e in entities]
                written += int(self._write_newer(keys=keys, args=[len(features), *features, *blobs]))
                progress(start + chunk.num_rows, written)
            if watermark_us is not None:
                self._advance(keys=[self._watermarks], args=[f"{layout.name}:{layout.version}", watermark_us])
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        return written

    def _get_watermark(self, layout: ViewLayout) -> int | None:
        try:
            value = self._client.hget(self._watermarks, f"{layout.name}:{layout.version}")
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        return None if value is None else int(value)

    def _set_watermark(self, layout: ViewLayout, us: int | None) -> None:
        field = f"{layout.name}:{layout.version}"
        try:
            if us is None:
                self._client.hdel(self._watermarks, field)
            else:
                self._client.hset(self._watermarks, field, us)
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None

    def drop(self, view: FeatureView) -> None:
        layout = self.layout(view)
        pattern = _glob_escape(self._keys(layout).base) + "*"
        try:
            batch: list[Any] = []
            for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
            self._client.hdel(self._watermarks, f"{layout.name}:{layout.version}")
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        self._client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
