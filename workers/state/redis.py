"""Resources and session status in Redis, for running without Kubernetes.

Layout (all keys under ``stashq:``):

    stashq:res:<Kind>:<namespace>:<name>     JSON of the applied resource (no status)
    stashq:status:<Kind>:<namespace>:<name>  JSON of its status
    stashq:index:<Kind>                      set of "<namespace>/<name>"

``create`` uses ``SET NX`` so that two schedulers, or a retry, create a session once.
``patch_status`` is a WATCH/MULTI transaction: concurrent patches never lose fields.
Secrets are stored like any resource (as etcd stores them on Kubernetes): protect the
Redis instance accordingly.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import redis

from workflows.errors import NotFound, StorageError
from workflows.resources import Resource

R = TypeVar("R", bound=Resource)
KEY_PREFIX = "stashq"


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


class RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10,
                                        health_check_interval=30))

    def get(self, cls: type[R], name: str, namespace: str) -> R:
        raw, status = self._redis.mget(_key("res", cls.KIND, namespace, name),
                                       _key("status", cls.KIND, namespace, name))
        if raw is None:
            raise NotFound(f'{cls.KIND} "{name}" not found in namespace "{namespace}"')
        return _load(cls, raw, status)

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

    def apply(self, resource: Resource) -> None:
        ns, name = resource.namespace, resource.name
        with self._redis.pipeline() as pipe:
            pipe.set(_key("res", resource.kind, ns, name), _dump(resource))
            pipe.sadd(_index(resource.kind), f"{ns}/{name}")
            pipe.execute()

    def create(self, resource: Resource) -> bool:
        ns, name = resource.namespace, resource.name
        created = self._redis.set(_key("res", resource.kind, ns, name), _dump(resource), nx=True)
        if created:
            self._redis.sadd(_index(resource.kind), f"{ns}/{name}")
            if resource.status:
                self.patch_status(type(resource), name, ns, resource.status)
        return bool(created)

    def patch_status(self, cls: type[Resource], name: str, namespace: str,
                     patch: dict[str, Any]) -> dict[str, Any]:
        key = _key("status", cls.KIND, namespace, name)

        def apply_patch(pipe: Any) -> None:
            current = pipe.get(key)
            status = merge_patch(json.loads(current) if current else {}, patch)
            pipe.multi()
            pipe.set(key, json.dumps(status))
            result.append(status)

        result: list[dict[str, Any]] = []
        self._redis.transaction(apply_patch, key)
        return result[-1]

    def delete(self, cls: type[Resource], name: str, namespace: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.delete(_key("res", cls.KIND, namespace, name),
                        _key("status", cls.KIND, namespace, name))
            pipe.srem(_index(cls.KIND), f"{namespace}/{name}")
            pipe.execute()

    def ping(self) -> None:
        try:
            self._redis.ping()
        except redis.RedisError as e:
            raise StorageError(f"state store (Redis) is unreachable: {e}") from e


def _key(space: str, kind: str, namespace: str, name: str) -> str:
    return f"{KEY_PREFIX}:{space}:{kind}:{namespace}:{name}"


def _index(kind: str) -> str:
    return f"{KEY_PREFIX}:index:{kind}"


def _dump(resource: Resource) -> str:
    return resource.model_dump_json(by_alias=True, exclude={"status"}, exclude_none=True)


def _load(cls: type[R], raw: bytes | str, status: bytes | str | None) -> R:
    data = json.loads(raw)
    data["status"] = json.loads(status) if status else {}
    return cls.model_validate(data)
