"""Resources and session status in Redis, for running without Kubernetes.

Layout (all keys under ``stashq:``):

    stashq:res:<Kind>:<namespace>:<name>     JSON of the applied resource (no status)
    stashq:status:<Kind>:<namespace>:<name>  JSON of its status
    stashq:index:<Kind>                      set of "<namespace>/<name>"
    stashq:lock:<lock name>                  hash: token → JSON of a lease holder
    stashq:generation:<Kind>                 counter bumped by apply, create and delete
                                             (not by status patches): "did any change?"
    stashq:changes:<Kind>                    stream, one entry {ref: "<namespace>/<name>"}
                                             per apply, create and delete, trimmed to
                                             about CHANGES_KEPT: "which changed since?"

A lost connection (Redis restarting, a network blip) raises ``TransientStorageError``
naming the server, so a step retries instead of failing its session; redis-py
reconnects by itself on the next call.

``create`` uses ``SET NX`` so that two schedulers, or a retry, create a session once.
``patch_status`` is a WATCH/MULTI transaction: concurrent patches never lose fields;
the status of a deleted object is not written back (``NotFound``, as the API's 404).
``delete`` of a BackupConfiguration deletes the BackupSessions it invoked in the same
transaction (``DEPENDANTS``; ``orphan=True`` keeps them), as Kubernetes' garbage
collector follows ownerReferences; the sessions' index is watched meanwhile, so a
session indexed while they are read is read too. One whose create is half done then
(stored, not yet indexed: ``create`` takes two steps) can outlive the configuration; its
worker fails it, naming the missing configuration.
Secrets are stored like any resource (as etcd stores them on Kubernetes): protect the
Redis instance accordingly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import redis

from workers.state.base import (
    STORE_SOURCE,
    Feed,
    LeaseAnswer,
    LockHold,
    RawObject,
    Ref,
    Refs,
    status_matches,
)
from workers.state.feeds import ChangeLogFeed
from workflows.errors import HookFailed, NotFound, StorageError, TransientStorageError
from workflows.manifests import load_json
from workflows.parsing import parse_as
from workflows.resources import BackupSession, Resource
from workflows.resources.hooks import PodSelector

R = TypeVar("R", bound=Resource)
KEY_PREFIX = "stashq"
#: Entries a kind's change log keeps, about (Redis trims whole nodes): a reader further
#: behind is told to list again. At 10,000 configurations, a full re-apply of all.
CHANGES_KEPT = 20_000
#: Changes one ``changes`` call returns at most; a reader further behind lists again,
#: which is cheaper than fetching more than this one by one.
CHANGES_READ_MAX = 2_000
#: Milliseconds a lock's table outlives its last write, so a lapsed lease is still there
#: to be reported by the next one who asks.
LOCK_TABLE_KEEP_MS = 7 * 24 * 3600 * 1000

#: Acquire: drop lapsed holders (returned, to be reported), refuse if a live holder
#: conflicts (an exclusive one, or any if exclusive is asked), else add the holder.
#: KEYS: table; ARGV: token, holder JSON, exclusive 0/1, lease ms, table keep ms.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exclusive = ARGV[3] == '1'
local conflicts, expired = {}, {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, held = pcall(cjson.decode, entries[i + 1])
  if not ok or type(held) ~= 'table' or (tonumber(held.expiresAtMs) or 0) < now then
    redis.call('HDEL', KEYS[1], entries[i])
    table.insert(expired, entries[i + 1])
  elseif entries[i] ~= ARGV[1] and (exclusive or held.exclusive) then
    table.insert(conflicts, entries[i + 1])
  end
end
if #conflicts > 0 then return {0, conflicts, expired} end
local me = cjson.decode(ARGV[2])
me.exclusive = exclusive
me.acquiredAtMs = now
me.expiresAtMs = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(me))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {1, conflicts, expired}
"""
#: A status and whether its object exists, in one round trip (inside a WATCH).
#: KEYS: status, resource. A missing status is false in Lua, None here.
_STATUS_IF_EXISTS_LUA = """
return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2])}
"""
#: Renew: KEYS: table; ARGV: token, lease ms, table keep ms. 0 if the token is gone.
_RENEW_LUA = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local t = redis.call('TIME')
local held = cjson.decode(v)
held.expiresAtMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(held))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


RawObjects = list[RawObject]
KindNames = list[tuple[str, str]]  #: (kind, name)
#: What deleting an object of a kind deletes with it (unless orphaned): the kinds whose
#: ``spec.invoker`` names it, as beat's sessions carry ownerReferences on Kubernetes.
DEPENDANTS: dict[str, tuple[type[Resource], ...]] = {"BackupConfiguration": (BackupSession,)}
MaybeRawObjects = list[RawObject | None]
Created = list[bool]
LockHolds = list[LockHold]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge recursively, ``None`` deletes a key."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


P = ParamSpec("P")
T = TypeVar("T")


def _reachable(method: Callable[Concatenate[RedisStore, P], T],
               ) -> Callable[Concatenate[RedisStore, P], T]:
    """Translate a lost connection into ``TransientStorageError`` naming the server."""
    def translated(self: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise TransientStorageError(f"state store (Redis) at {self.where} is "
                                        f"unreachable: {e}") from e
    functools.update_wrapper(translated, method)
    return translated


class RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        kwargs = client.connection_pool.connection_kwargs  # the URL may hold a password
        self.where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10,
                                        health_check_interval=30))

    @_reachable
    def get(self, cls: type[R], name: str, namespace: str) -> R:
        raw, status = self._redis.mget(_key("res", cls.KIND, namespace, name),
                                       _key("status", cls.KIND, namespace, name))
        if raw is None:
            raise NotFound(f'{cls.KIND} "{name}" not found in namespace "{namespace}"')
        return _load(cls, raw, status)

    @_reachable
    def list(self, cls: type[R], namespace: str | None = None) -> list[R]:
        members = sorted(m.decode() if isinstance(m, bytes) else m
                         for m in self._redis.smembers(_index(cls.KIND)))
        refs = [m.split("/", 1) for m in members]
        refs = [r for r in refs if namespace is None or r[0] == namespace]
        if not refs:
            return []
        keys = [k for ns, n in refs for k in (_key("res", cls.KIND, ns, n),
                                              _key("status", cls.KIND, ns, n))]
        values = self._redis.mget(keys)
        pairs = zip(values[::2], values[1::2], strict=True)
        return [_load(cls, raw, status) for raw, status in pairs if raw is not None]

    @_reachable
    def apply(self, resource: Resource) -> None:
        ns, name = resource.namespace, resource.name
        with self._redis.pipeline() as pipe:
            pipe.set(_key("res", resource.kind, ns, name), _dump(resource))
            pipe.sadd(_index(resource.kind), f"{ns}/{name}")
            _changed(pipe, resource.kind, [f"{ns}/{name}"])
            pipe.execute()

    @_reachable
    def create(self, resource: Resource) -> bool:
        ns, name = resource.namespace, resource.name
        created = self._redis.set(_key("res", resource.kind, ns, name), _dump(resource), nx=True)
        if created:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.sadd(_index(resource.kind), f"{ns}/{name}")
                _changed(pipe, resource.kind, [f"{ns}/{name}"])
                pipe.execute()
            if resource.status:
                self.patch_status(type(resource), name, ns, resource.status)
        return bool(created)

    @_reachable
    def patch_status(self, cls: type[Resource], name: str, namespace: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        key, res = _key("status", cls.KIND, namespace, name), _key("res", cls.KIND, namespace, name)

        def apply_patch(pipe: Any) -> None:
            current = _current_status(pipe, key, res, cls.KIND, name, namespace)
            status = merge_patch(json.loads(current) if current else {}, patch)
            pipe.multi()
            pipe.set(key, json.dumps(status))
            result.append(status)

        result: list[dict[str, Any]] = []
        self._redis.transaction(apply_patch, key, res)
        return result[-1]

    @_reachable
    def patch_status_where(self, cls: type[Resource], name: str, namespace: str,
                           expect: Mapping[str, Any],
                           patch: dict[str, Any]) -> dict[str, Any] | None:
        key, res = _key("status", cls.KIND, namespace, name), _key("res", cls.KIND, namespace, name)

        def apply_patch(pipe: Any) -> None:
            current = _current_status(pipe, key, res, cls.KIND, name, namespace)
            status = json.loads(current) if current else {}
            if not status_matches(status, expect):
                result.append(None)
                return
            status = merge_patch(status, patch)
            pipe.multi()
            pipe.set(key, json.dumps(status))
            result.append(status)

        result: list[dict[str, Any] | None] = []
        self._redis.transaction(apply_patch, key, res)
        return result[-1]

    @_reachable
    def delete(self, cls: type[Resource], name: str, namespace: str, *,
               orphan: bool = False) -> None:
        """Remove the object and, unless ``orphan``, the objects it owns (a
        BackupConfiguration's BackupSessions, found by their ``spec.invoker``), in one
        transaction: what Kubernetes' garbage collector does for owner references. The
        dependants' indexes are watched: one added while they are read, read again."""
        kinds = () if orphan else DEPENDANTS.get(cls.KIND, ())

        def remove(pipe: Any) -> None:
            doomed: KindNames = [(cls.KIND, name)]
            doomed += self._dependants(cls.KIND, name, namespace, kinds)
            pipe.multi()
            for kind, n in doomed:
                pipe.delete(_key("res", kind, namespace, n), _key("status", kind, namespace, n))
                pipe.srem(_index(kind), f"{namespace}/{n}")
                _changed(pipe, kind, [f"{namespace}/{n}"])

        self._redis.transaction(remove, *(_index(k.KIND) for k in kinds))

    def _dependants(self, kind: str, name: str, namespace: str,
                    kinds: Sequence[type[Resource]]) -> KindNames:
        """(kind, name) of each object of ``kinds`` in ``namespace`` the object owns."""
        owned: KindNames = []
        for dependant in kinds:
            owned += [(dependant.KIND, obj.name) for obj in self.list_raw(dependant, namespace)
                      if _invoked_by(obj.body, kind, name)]
        return owned

    @_reachable
    def list_raw(self, cls: type[Resource], namespace: str | None = None) -> RawObjects:
        """Every object of a kind, unparsed, so that one bad object hides no other."""
        members = sorted(_text(m) for m in self._redis.smembers(_index(cls.KIND)))
        refs = [(ns, n) for ns, _, n in (m.partition("/") for m in members)
                if namespace is None or ns == namespace]
        return [obj for obj in self.get_raw_many(cls, refs) if obj is not None]

    @_reachable
    def get_raw_many(self, cls: type[Resource], refs: Sequence[Ref]) -> MaybeRawObjects:
        """The objects named, unparsed, in one round trip; None where one is gone."""
        if not refs:
            return []
        kind = cls.KIND
        values = self._redis.mget([k for ns, n in refs for k in (_key("res", kind, ns, n),
                                                                  _key("status", kind, ns, n))])
        pairs = zip(refs, values[::2], values[1::2], strict=True)
        return [RawObject(ns, n, _bytes(body), _bytes(status) if status is not None else None)
                if body is not None else None for (ns, n), body, status in pairs]

    @_reachable
    def changes(self, cls: type[Resource], after: str) -> tuple[Refs, str] | None:
        """The objects of a kind applied, created or deleted since ``after`` (what the
        last call returned; "" for "from now on"), and what to pass next time; None if
        the log no longer holds everything since (trimmed, replaced, or too many to read
        one by one): list them all again.

        A cursor is "<last entry id> <entries added until it>": the stream's own count
        tells whether entries after it were trimmed.
        """
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(_changes(cls.KIND))
            last_id, _, seen = after.partition(" ")
            pipe.xrange(_changes(cls.KIND), f"({last_id or '0-0'}", "+",
                        count=CHANGES_READ_MAX + 1)
            info, entries = pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):  # no stream yet: nothing was ever changed
            return ([], "0-0 0") if after in ("", "0-0 0") else None
        added, newest = int(info["entries-added"]), _text(info["last-generated-id"])
        if not after:
            return [], f"{newest} {added}"
        since = added - int(seen or 0)
        if since < 0 or since > min(int(info["length"]), CHANGES_READ_MAX) \
                or _stream_id(newest) < _stream_id(last_id):
            return None
        refs = [_text(fields[b"ref"]).partition("/") for _, fields in entries[:since]]
        return [(ns, n) for ns, _, n in refs], f"{newest} {added}"

    @_reachable
    def scan_refs(self, cls: type[Resource], cursor: int, count: int) -> tuple[int, Refs]:
        """One step of a pass over the kind's index (``SSCAN``): the next cursor (0: the
        pass is over) and some (namespace, name) pairs. An object there during the whole
        pass is returned at least once."""
        cursor, members = self._redis.sscan(_index(cls.KIND), cursor, count=count)
        refs = [_text(m).partition("/") for m in members]
        return int(cursor), [(ns, n) for ns, _, n in refs]

    @_reachable
    def create_many(self, resources: Sequence[Resource]) -> Created:
        """``create`` for many objects in two round trips: True where created.

        The ``SET NX`` of each object still decides alone; a new object's status is
        written whole (nothing can have patched it yet).
        """
        with self._redis.pipeline(transaction=False) as pipe:
            for r in resources:
                pipe.set(_key("res", r.kind, r.namespace, r.name), _dump(r), nx=True)
            created = [bool(answer) for answer in pipe.execute()]
        made = [r for r, ok in zip(resources, created, strict=True) if ok]
        with self._redis.pipeline(transaction=False) as pipe:
            for kind in {r.kind for r in made}:
                refs = [f"{r.namespace}/{r.name}" for r in made if r.kind == kind]
                pipe.sadd(_index(kind), *refs)
                _changed(pipe, kind, refs)
            statuses = {_key("status", r.kind, r.namespace, r.name): json.dumps(r.status)
                        for r in made if r.status}
            if statuses:
                pipe.mset(statuses)
            pipe.execute()
        return created

    def feed(self, cls: type[Resource], namespace: str | None) -> Feed:
        """The change log, read from a cursor (``workers/state/feeds.py``)."""
        return ChangeLogFeed(self, namespace, cls)

    @_reachable
    def generation(self, cls: type[Resource]) -> int:
        """A number that changes whenever an object of the kind is applied, created or
        deleted (status patches leave it): when it has not moved, a listing is as before."""
        value = self._redis.get(_generation(cls.KIND))
        return int(value) if value is not None else 0

    @_reachable
    def acquire_lease(self, lock: str, token: str, holder: Mapping[str, Any], *,
                      exclusive: bool, lease_s: float) -> LeaseAnswer:
        """See ``workers.state.base.Leases``; one Lua script, timed by the Redis server."""
        acquired, conflicts, expired = self._redis.eval(
            _ACQUIRE_LUA, 1, _lock_key(lock), token, json.dumps(dict(holder)),
            "1" if exclusive else "0", int(lease_s * 1000), LOCK_TABLE_KEEP_MS)
        return LeaseAnswer(bool(acquired), [json.loads(c) for c in conflicts],
                           [_holder(e) for e in expired])

    @_reachable
    def renew_lease(self, lock: str, token: str, lease_s: float) -> bool:
        return bool(self._redis.eval(_RENEW_LUA, 1, _lock_key(lock), token,
                                     int(lease_s * 1000), LOCK_TABLE_KEEP_MS))

    @_reachable
    def release_lease(self, lock: str, token: str) -> None:
        self._redis.hdel(_lock_key(lock), token)

    @_reachable
    def lease_holds(self, locks: Sequence[str]) -> LockHolds:
        """See ``Leases.lease_holds``; timed by the Redis server's clock, as the leases
        are."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for lock in locks:
                pipe.hvals(_lock_key(lock))
            (seconds, micros), *tables = pipe.execute()
        now_ms = seconds * 1000 + micros // 1000
        return [_hold([_holder(raw) for raw in table], now_ms) for table in tables]

    def exec_in_pod(self, namespace: str, pod: PodSelector, container: str | None,
                    command: Sequence[str], timeout_s: float) -> tuple[int, str]:
        """Refused: without Kubernetes there is no pod to run in."""
        raise HookFailed("exec in a pod needs the Kubernetes store (STASHQ_STORE=kubernetes); "
                         "without it, leave out pod to run on the worker")

    def session_watch(self) -> None:
        """None: the CLI and beat queue each session they create; nothing to watch."""
        return None

    def ping(self) -> None:
        try:
            self._redis.ping()
        except redis.RedisError as e:
            raise StorageError(f"state store (Redis) is unreachable: {e}") from e


def _current_status(pipe: Any, key: str, res: str, kind: str, name: str,
                    namespace: str) -> bytes | None:
    """The stored status (watched ``key``), read in one round trip with the check that the
    object (``res``) exists: ``NotFound`` if not, so that a deleted object's status is not
    written back, as the API server answers 404 (a running step learns it was deleted)."""
    status, exists = pipe.eval(_STATUS_IF_EXISTS_LUA, 2, key, res)
    if not exists:
        raise NotFound(f'{kind} "{name}" not found in namespace "{namespace}"')
    return cast(bytes | None, status)


def _invoked_by(body: bytes, kind: str, name: str) -> bool:
    """Does the stored object name ``kind``/``name`` as its ``spec.invoker``?"""
    try:
        invoker = json.loads(body).get("spec", {}).get("invoker") or {}
    except (ValueError, AttributeError):
        return False  # not ours to judge: the parser reports it where it is read
    return isinstance(invoker, dict) and invoker.get("name") == name \
        and invoker.get("kind", kind) == kind


def _key(space: str, kind: str, namespace: str, name: str) -> str:
    return f"{KEY_PREFIX}:{space}:{kind}:{namespace}:{name}"


def _generation(kind: str) -> str:
    return f"{KEY_PREFIX}:generation:{kind}"


def _changes(kind: str) -> str:
    return f"{KEY_PREFIX}:changes:{kind}"


def _changed(pipe: Any, kind: str, refs: Sequence[str]) -> None:
    """Bump the kind's generation and log each ref in its change stream."""
    pipe.incr(_generation(kind))
    for ref in refs:
        pipe.xadd(_changes(kind), {"ref": ref}, maxlen=CHANGES_KEPT, approximate=True)


def _stream_id(text: str) -> tuple[int, int]:
    millis, _, sequence = text.partition("-")
    return int(millis or 0), int(sequence or 0)


def _lock_key(lock: str) -> str:
    return f"{KEY_PREFIX}:lock:{lock}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _holder(raw: bytes) -> dict[str, Any]:
    try:
        held = json.loads(raw)
    except ValueError:
        return {"owner": raw[:80].decode(errors="replace")}
    return held if isinstance(held, dict) else {"owner": str(held)[:80]}


def _hold(holders: list[dict[str, Any]], now_ms: int) -> LockHold:
    live = [float(h.get("acquiredAtMs") or now_ms) for h in holders
            if float(h.get("expiresAtMs") or 0) >= now_ms]
    return LockHold(len(live), max(0.0, (now_ms - min(live)) / 1000) if live else 0.0)


def _index(kind: str) -> str:
    return f"{KEY_PREFIX}:index:{kind}"


def _dump(resource: Resource) -> str:
    return resource.model_dump_json(by_alias=True, exclude={"status"}, exclude_none=True)


def _load(cls: type[R], raw: bytes | str, status: bytes | str | None) -> R:
    """An object read back, parsed as one from a file is: an ``InvalidResource`` if
    another writer stored it past the bounds or the models (as from the other store)."""
    data = load_json(raw, source=STORE_SOURCE)
    if isinstance(data, dict):
        data["status"] = load_json(status, source=STORE_SOURCE) if status else {}
    return parse_as(cls, data, source=STORE_SOURCE)
