"""The job store on Redis: one hash per job and two sorted sets as queues.

Keys, under a prefix (``?prefix=`` in the URL, ``lockgate:jobs:`` by default)::

    {prefix}job:{id}    hash: the job's fields; expires with the job's result
    {prefix}work        sorted set: queued jobs by when they are due, running ones by lease end
    {prefix}mail        sorted set: finished jobs whose callback is pending, by when it is due

Every change of state is one Lua script, so a claim is atomic however many processes share the
server. A claim script finds its job's key from the id (the key is not declared up front), so
the store needs one Redis server or primary, not a cluster. A job whose hash expired while its
id still sat in a queue is dropped from it by the next claim that meets it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockgate.config import redact_uri
from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.serving._job_store import JobRecord, JobStatus

__all__ = ["RedisJobStore"]

_CONNECT_TIMEOUT_S = 2.0
_TIMEOUT_S = 5.0

# KEYS: queue. ARGV: now, lease end, owner, job key prefix. The first due id whose job still
# exists becomes running (a stale id is removed and the next one tried).
_CLAIM = """
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #ids == 0 then return false end
  local key = ARGV[4] .. ids[1]
  local status = redis.call('HGET', key, 'status')
  if status == 'queued' or status == 'running' then
    redis.call('ZADD', KEYS[1], ARGV[2], ids[1])
    redis.call('HSET', key, 'status', 'running', 'owner', ARGV[3], 'started', ARGV[1])
    redis.call('HINCRBY', key, 'attempts', 1)
    return redis.call('HGETALL', key)
  end
  redis.call('ZREM', KEYS[1], ids[1])
end
"""

# KEYS: work, job. ARGV: id, owner, lease end.
_RENEW = """
local cur = redis.call('HMGET', KEYS[2], 'owner', 'status')
if cur[1] ~= ARGV[2] or cur[2] ~= 'running' then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# KEYS: work, job. ARGV: id, owner, due, refund (0 or 1).
_RELEASE = """
local cur = redis.call('HMGET', KEYS[2], 'owner', 'status')
if cur[1] ~= ARGV[2] or cur[2] ~= 'running' then return 0 end
redis.call('HSET', KEYS[2], 'status', 'queued')
redis.call('HDEL', KEYS[2], 'owner')
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'attempts', -1) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# KEYS: work, mail, job. ARGV: id, owner, status, outcome, finished, expires, callback ('' for
# none), callback due ('' for none).
_FINISH = """
local cur = redis.call('HMGET', KEYS[3], 'owner', 'status')
if cur[1] ~= ARGV[2] or cur[2] ~= 'running' then return 0 end
redis.call('HSET', KEYS[3], 'status', ARGV[3], 'outcome', ARGV[4], 'finished', ARGV[5], 'expires', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[3], 'callback', ARGV[7]) end
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[8] ~= '' then redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1]) end
redis.call('PEXPIREAT', KEYS[3], ARGV[6])
return 1
"""

# KEYS: mail. ARGV: now, lease end, owner, job key prefix.
_CLAIM_CALLBACK = """
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #ids == 0 then return false end
  local key = ARGV[4] .. ids[1]
  if redis.call('EXISTS', key) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], ids[1])
    redis.call('HSET', key, 'mail_owner', ARGV[3])
    return redis.call('HGETALL', key)
  end
  redis.call('ZREM', KEYS[1], ids[1])
end
"""

# KEYS: mail, job. ARGV: id, owner, callback, due ('' when done).
_RECORD_CALLBACK = """
if redis.call('HGET', KEYS[2], 'mail_owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'callback', ARGV[3])
redis.call('HDEL', KEYS[2], 'mail_owner')
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
end
return 1
"""


def _reason(exc: Exception) -> str:
    """redis-py's message as a clause ("Error 111 connecting to h:p. Connection refused." names
    the address the message already names)."""
    if isinstance(exc, redis.TimeoutError):
        return "no answer in time"
    text = str(exc).strip().rstrip(".")
    if " connecting to " in text and ". " in text:
        text = text.split(". ", 1)[1]
    return text.replace(". ", ", ").lower() or type(exc).__name__


def _int(value: bytes | None) -> int | None:
    return None if value is None or value == b"" else int(value)


def _record(fields: dict[bytes, bytes]) -> JobRecord:
    url = fields.get(b"callback_url")
    owner = fields.get(b"owner")
    status: JobStatus = fields[b"status"].decode()  # type: ignore[assignment]
    return JobRecord(
        id=fields[b"id"].decode(),
        deployment=fields[b"deployment"].decode(),
        request_id=fields[b"request_id"].decode(),
        payload=fields[b"payload"],
        callback_url=None if url is None else url.decode(),
        status=status,
        created_ms=int(fields[b"created"]),
        started_ms=_int(fields.get(b"started")),
        finished_ms=_int(fields.get(b"finished")),
        expires_ms=_int(fields.get(b"expires")),
        attempts=int(fields.get(b"attempts", b"0")),
        owner=None if owner is None else owner.decode(),
        outcome=fields.get(b"outcome"),
        callback=fields.get(b"callback"),
    )


def _from_flat(reply: Any) -> JobRecord | None:
    """A record from a script's HGETALL reply (a flat list of field, value, ...)."""
    if not reply:
        return None
    return _record(dict(zip(reply[::2], reply[1::2], strict=True)))


class RedisJobStore:
    """Jobs in Redis, shared by every server process pointed at the same URL."""

    def __init__(self, *, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.prefix = next((v for k, v in query if k == "prefix"), "lockgate:jobs:")
        client_url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"])))
        self.url = redact_uri(url)
        if parts.scheme in ("redis", "rediss") and parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise InvalidInputError(f"jobs_url {self.url} names database {parts.path!r}; use a number, e.g. /0")
        try:
            self._client = redis.Redis.from_url(
                client_url,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
                socket_timeout=_TIMEOUT_S,
                retry=Retry(NoBackoff(), 1),  # one quick retry rides out a Redis restart
            )
        except ValueError as exc:
            raise InvalidInputError(f"jobs_url {self.url} does not parse ({exc}); use redis://host:port/db") from None
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._client.close()
            raise UnavailableError(
                f"the job store at {self.url} does not answer ({_reason(exc)}); start Redis there or fix jobs_url"
            ) from None
        self._work = f"{self.prefix}work"
        self._mail = f"{self.prefix}mail"
        self._jobs = f"{self.prefix}job:"
        self._claim = self._client.register_script(_CLAIM)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._finish = self._client.register_script(_FINISH)
        self._claim_callback = self._client.register_script(_CLAIM_CALLBACK)
        self._record_callback = self._client.register_script(_RECORD_CALLBACK)

    def _unavailable(self, exc: Exception) -> UnavailableError:
        return UnavailableError(f"the job store at {self.url} failed ({_reason(exc)}); check that Redis is up")

    def add(self, job: JobRecord) -> None:
        fields: dict[Any, Any] = {
            "id": job.id,
            "deployment": job.deployment,
            "request_id": job.request_id,
            "payload": job.payload,
            "status": job.status,
            "created": job.created_ms,
            "attempts": job.attempts,
        }
        if job.callback_url is not None:
            fields["callback_url"] = job.callback_url
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(self._jobs + job.id, mapping=fields)
                pipe.zadd(self._work, {job.id: job.created_ms})
                pipe.execute()
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None

    def claim(self, owner: str, *, now_ms: int, lease_ms: int) -> JobRecord | None:
        return _from_flat(self._run(self._claim, [self._work], [now_ms, now_ms + lease_ms, owner, self._jobs]))

    def renew(self, job_id: str, owner: str, *, until_ms: int) -> bool:
        return bool(self._run(self._renew, [self._work, self._jobs + job_id], [job_id, owner, until_ms]))

    def release(self, job_id: str, owner: str, *, due_ms: int, refund: bool) -> bool:
        keys = [self._work, self._jobs + job_id]
        return bool(self._run(self._release, keys, [job_id, owner, due_ms, int(refund)]))

    def finish(
        self,
        job_id: str,
        owner: str,
        *,
        status: JobStatus,
        outcome: bytes,
        finished_ms: int,
        expires_ms: int,
        callback: bytes | None,
        callback_due_ms: int | None,
    ) -> bool:
        keys = [self._work, self._mail, self._jobs + job_id]
        args = [
            job_id,
            owner,
            status,
            outcome,
            finished_ms,
            expires_ms,
            callback or b"",
            "" if callback_due_ms is None else callback_due_ms,
        ]
        return bool(self._run(self._finish, keys, args))

    def get(self, job_id: str, *, now_ms: int) -> JobRecord | None:
        try:
            fields: dict[bytes, bytes] = self._client.hgetall(self._jobs + job_id)  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise self._unavailable(exc) from None
        if not fields or b"status" not in fields:
            return None
        record = _record(fields)
        if record.expires_ms is not None and record.expires_ms <= now_ms:
            return None  # Redis drops the key within moments; until then it is gone all the same
        return record

    def claim_callback(self, owner: str, *, now_ms: int, lease_ms: int) -> JobRecord | None:
        args = [now_ms, now_ms + lease_ms, owner, self._jobs]
        return _from_flat(self._run(self._claim_callback, [self._mail], args))

    def record_callback(self, job_id: str, owner: str, *, callback: bytes, due_ms: int | None) -> bool:
        args = [job_id, owner, callback, "" if due_ms is None else due_ms]
        return bool(self._run(self._record_callback, [self._mail, self._jobs + job_id], args))

    def purge(self, *, now_ms: int) -> int:
        return 0  # job hashes expire by themselves (PEXPIREAT at finish)

    def close(self) -> None:
        self._client.close()
