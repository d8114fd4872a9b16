"""One contract for every ResourceStore: Redis, and the Kubernetes API (the fake server
of tests/kube, through the real ``kubernetes`` client and a kubeconfig file)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.hostile import nested_value
from workers.state.base import ResourceStore
from workers.state.kube import KubeStore
from workers.state.redis import RedisStore
from workflows.errors import InvalidResource, NotFound
from workflows.parsing import parse_resource
from workflows.resources import BackupConfiguration, BackupSession, Repository, Resource


@pytest.fixture(params=["redis", "kube"])
def store(request: pytest.FixtureRequest) -> Iterator[ResourceStore]:
    if request.param == "redis":
        yield RedisStore.from_url(request.getfixturevalue("redis_url"))
    else:
        yield KubeStore.from_kubeconfig(str(request.getfixturevalue("kubeconfig")))


def session(name: str, namespace: str = "default") -> Resource:
    return parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
                           "metadata": {"name": name, "namespace": namespace},
                           "spec": {"invoker": {"name": "nightly"}}})


def repository(name: str, path: str) -> Resource:
    return parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
                           "metadata": {"name": name},
                           "spec": {"backend": {"local": {"mountPath": path}}}})


def test_create_is_exactly_once(store: ResourceStore) -> None:
    assert store.create(session("nightly-100"))
    assert not store.create(session("nightly-100"))
    assert store.create(session("nightly-100", namespace="other"))


def test_concurrent_creates_have_one_winner(store: ResourceStore) -> None:
    wins: list[bool] = []
    threads = [threading.Thread(target=lambda: wins.append(store.create(session("race-1"))))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_get_missing_names_kind_name_and_namespace(store: ResourceStore) -> None:
    with pytest.raises(NotFound, match='Repository "nope" not found in namespace "default"'):
        store.get(Repository, "nope", "default")


def test_apply_keeps_status_and_replaces_spec(store: ResourceStore) -> None:
    store.apply(repository("r", "/a"))
    store.patch_status(Repository, "r", "default", {"snapshotCount": 3})
    store.apply(repository("r", "/b"))
    repo = store.get(Repository, "r", "default")
    assert repo.spec.backend.local is not None and repo.spec.backend.local.mount_path == "/b"
    assert repo.status == {"snapshotCount": 3}


def test_concurrent_status_patches_lose_nothing(store: ResourceStore) -> None:
    store.create(session("s-1"))

    def patch(i: int) -> None:
        for j in range(10):
            store.patch_status(BackupSession, "s-1", "default", {"steps": {f"{i}-{j}": "ok"}})

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.get(BackupSession, "s-1", "default").status["steps"]) == 80


def test_list_by_namespace_and_delete(store: ResourceStore) -> None:
    store.create(session("a-1"))
    store.create(session("b-1", namespace="team"))
    assert [s.name for s in store.list(BackupSession)] == ["a-1", "b-1"]
    assert [s.name for s in store.list(BackupSession, "team")] == ["b-1"]
    store.delete(BackupSession, "a-1", "default")
    store.delete(BackupSession, "a-1", "default")
    assert [s.name for s in store.list(BackupSession)] == ["b-1"]
    with pytest.raises(NotFound):
        store.get(BackupSession, "a-1", "default")


def test_a_conditional_patch_applies_only_while_the_fields_hold(store: ResourceStore) -> None:
    store.create(session("c-1"))
    store.patch_status(BackupSession, "c-1", "default", {"phase": "Pending", "queueToken": "t1"})
    expect = {"phase": "Pending", "queueToken": "t1", "claimedBy": None}  # None: absent
    claimed = store.patch_status_where(BackupSession, "c-1", "default", expect,
                                       {"phase": "Running", "claimedBy": "t1"})
    assert claimed == {"phase": "Running", "queueToken": "t1", "claimedBy": "t1"}
    assert store.patch_status_where(BackupSession, "c-1", "default", expect,
                                    {"phase": "Running", "claimedBy": "t2"}) is None
    assert store.get(BackupSession, "c-1", "default").status["claimedBy"] == "t1"


def test_of_concurrent_conditional_patches_exactly_one_wins(store: ResourceStore) -> None:
    store.create(session("c-2"))
    store.patch_status(BackupSession, "c-2", "default", {"phase": "Pending"})
    wins: list[str] = []

    def claim(token: str) -> None:
        # Writes that the condition does not read (heartbeats) must not make it fail.
        store.patch_status(BackupSession, "c-2", "default", {"heartbeatAt": token})
        if store.patch_status_where(BackupSession, "c-2", "default",
                                    {"phase": "Pending", "claimedBy": None},
                                    {"phase": "Running", "claimedBy": token}) is not None:
            wins.append(token)

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get(BackupSession, "c-2", "default").status["claimedBy"] == wins[0]


def write_unchecked(store: ResourceStore, request: pytest.FixtureRequest,
                    raw: dict[str, Any]) -> None:
    """Store ``raw`` as another writer might have: without StashQ's checks."""
    if isinstance(store, RedisStore):
        kind, metadata = raw["kind"], raw["metadata"]
        store._redis.set(f"stashq:res:{kind}:{metadata['namespace']}:{metadata['name']}",
                         json.dumps(raw))
        store._redis.sadd(f"stashq:index:{kind}", f"{metadata['namespace']}/{metadata['name']}")
    else:
        request.getfixturevalue("kube_api").create(raw)


@pytest.mark.parametrize(("hooks", "reason"), [
    (nested_value(100), r": is nested more than 64 levels deep$"),
    ({"script": "x" * 300_000}, r"spec\.hooks: is larger than 256 KiB serialized"),
], ids=["deep", "large"])
def test_an_object_stored_past_the_manifest_bounds_is_refused_when_read(
        store: ResourceStore, request: pytest.FixtureRequest, hooks: dict[str, Any],
        reason: str) -> None:
    """What another writer stored (the API server allows 10,000 levels and 1.5 MiB) is
    read back within the bounds ``stashq apply`` keeps to."""
    write_unchecked(store, request, {
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": "foreign", "namespace": "default"},
        "spec": {"repository": {"name": "r"}, "target": {"ref": {"name": "db"}},
                 "hooks": hooks}})
    with pytest.raises(InvalidResource, match=reason):
        store.get(BackupConfiguration, "foreign", "default")
