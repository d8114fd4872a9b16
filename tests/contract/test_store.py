"""One contract for every ResourceStore: Redis, and the Kubernetes API (the fake server
of tests/kube, through the real ``kubernetes`` client and a kubeconfig file)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import pytest

from tests.support.hostile import nested_value
from workers.state.base import ResourceStore
from workers.state.kube import KubeStore
from workers.state.redis import RedisStore
from workflows.errors import InvalidResource, NotFound
from workflows.parsing import parse_resource
from workflows.resources import BackupConfiguration, BackupSession, Repository, Resource

T = TypeVar("T")


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


def at_once(target: Callable[[T], object], args: Iterable[T]) -> None:
    """``target(arg)`` for each of ``args``, each in a thread of its own, all at once."""
    threads = [threading.Thread(target=target, args=(arg,)) for arg in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_create_is_exactly_once(store: ResourceStore) -> None:
    assert store.create(session("nightly-100"))
    assert not store.create(session("nightly-100"))
    assert store.create(session("nightly-100", namespace="other"))


def test_concurrent_creates_have_one_winner(store: ResourceStore) -> None:
    wins: list[bool] = []
    at_once(lambda _: wins.append(store.create(session("race-1"))), range(16))
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

    at_once(patch, range(8))
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


def configuration(name: str) -> BackupConfiguration:
    resource = parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
                               "metadata": {"name": name},
                               "spec": {"schedule": "0 * * * *", "repository": {"name": "repo"},
                                        "target": {"ref": {"name": "db"}}}})
    assert isinstance(resource, BackupConfiguration)
    return resource


def sessions_of(store: ResourceStore, *configs: str) -> None:
    """Sessions as beat and the CLI create them: owned by their configuration."""
    from beat.dispatch import new_backup_session

    for config in configs:
        store.apply(configuration(config))
        owner = store.get(BackupConfiguration, config, "default")
        for slot in (100, 200):
            assert new_backup_session(store, config, "default", slot, owner=owner) is not None


def test_deleting_a_configuration_deletes_its_sessions(store: ResourceStore) -> None:
    sessions_of(store, "nightly", "weekly")
    store.create(session("other-1"))  # invoked by "nightly", but not owned (kubectl create)
    store.delete(BackupConfiguration, "nightly", "default")
    left = [s.name for s in store.list(BackupSession, "default")]
    # Redis has no owner references: it owns by spec.invoker, so "other-1" goes there too
    assert left == (["weekly-100", "weekly-200"] if isinstance(store, RedisStore)
                    else ["other-1", "weekly-100", "weekly-200"])


def test_an_orphaning_delete_leaves_the_sessions_readable_and_owned_by_nothing(
        store: ResourceStore) -> None:
    sessions_of(store, "nightly")
    store.delete(BackupConfiguration, "nightly", "default", orphan=True)
    with pytest.raises(NotFound):
        store.get(BackupConfiguration, "nightly", "default")
    left = store.list(BackupSession, "default")
    assert [(s.name, s.spec.invoker.name, s.status["phase"]) for s in left] == [
        ("nightly-100", "nightly", "Pending"), ("nightly-200", "nightly", "Pending")]
    assert all("ownerReferences" not in (s.metadata.model_extra or {}) for s in left)
    store.apply(configuration("nightly"))  # a configuration of the same name owns nothing
    store.delete(BackupConfiguration, "nightly", "default")
    assert len(store.list(BackupSession, "default")) == (0 if isinstance(store, RedisStore)
                                                         else 2)


def test_the_status_of_a_deleted_object_is_not_written_back(store: ResourceStore) -> None:
    store.create(session("gone-1"))
    store.delete(BackupSession, "gone-1", "default")
    with pytest.raises(NotFound):
        store.patch_status(BackupSession, "gone-1", "default", {"phase": "Running"})
    with pytest.raises(NotFound):
        store.patch_status_where(BackupSession, "gone-1", "default", {}, {"phase": "Running"})
    assert store.list(BackupSession, "default") == []


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

    at_once(claim, (f"t{i}" for i in range(12)))
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
    ({"script": "x" * 300_000}, r"spec\.runtimeSettings: is larger than 256 KiB serialized"),
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
                 "runtimeSettings": hooks}})
    with pytest.raises(InvalidResource, match=reason):
        store.get(BackupConfiguration, "foreign", "default")


# --- leases: the locks (workers/locks.py) -----------------------------------------------

LOCK = "repository:s3:backups/Prod_DB"  # what lock_name() makes: no valid object name


def holder(owner: str) -> dict[str, object]:
    return {"owner": owner, "purpose": "backup", "host": "h", "pid": 1}


def test_shared_holders_share_and_an_exclusive_one_waits_for_them(store: ResourceStore) -> None:
    for token in ("a", "b"):
        answer = store.acquire_lease(LOCK, token, holder(f"s-{token}"), exclusive=False,
                                     lease_s=30)
        assert answer.acquired and answer.holders == [] and answer.expired == []
    refused = store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True, lease_s=30)
    assert not refused.acquired
    assert sorted(h["owner"] for h in refused.holders) == ["s-a", "s-b"]
    assert all(h["exclusive"] is False and h["expiresAtMs"] > h["acquiredAtMs"]
               for h in refused.holders)
    store.release_lease(LOCK, "a")
    assert not store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True,
                                   lease_s=30).acquired
    store.release_lease(LOCK, "b")
    assert store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True, lease_s=30).acquired
    refused = store.acquire_lease(LOCK, "c", holder("s-c"), exclusive=False, lease_s=30)
    assert not refused.acquired and [h["owner"] for h in refused.holders] == ["prune"]
    assert store.acquire_lease("another lock", "c", holder("s-c"), exclusive=True,
                               lease_s=30).acquired


def test_a_lease_nobody_renews_lapses_and_is_reported_once(store: ResourceStore) -> None:
    assert store.acquire_lease(LOCK, "dead", holder("killed-1"), exclusive=True,
                               lease_s=0.3).acquired
    assert not store.acquire_lease(LOCK, "next", holder("next-1"), exclusive=True,
                                   lease_s=30).acquired
    time.sleep(0.5)
    answer = store.acquire_lease(LOCK, "next", holder("next-1"), exclusive=True, lease_s=30)
    assert answer.acquired and [h["owner"] for h in answer.expired] == ["killed-1"]
    assert not store.renew_lease(LOCK, "dead", 30)  # its worker comes back: too late
    store.release_lease(LOCK, "next")
    assert store.acquire_lease(LOCK, "third", holder("third-1"), exclusive=True,
                               lease_s=30).expired == []


def test_a_refused_acquire_still_removes_and_reports_the_lapsed(store: ResourceStore) -> None:
    store.acquire_lease(LOCK, "dead", holder("killed-1"), exclusive=False, lease_s=0.3)
    store.acquire_lease(LOCK, "live", holder("running-1"), exclusive=False, lease_s=30)
    time.sleep(0.5)
    answer = store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True, lease_s=30)
    assert not answer.acquired and [h["owner"] for h in answer.holders] == ["running-1"]
    assert [h["owner"] for h in answer.expired] == ["killed-1"]
    again = store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True, lease_s=30)
    assert again.expired == []


def test_a_renewed_lease_outlives_its_length(store: ResourceStore) -> None:
    assert store.acquire_lease(LOCK, "long", holder("long-backup"), exclusive=False,
                               lease_s=0.6).acquired
    for _ in range(5):  # 1.25 s: two leases
        time.sleep(0.25)
        assert store.renew_lease(LOCK, "long", 0.6)
    answer = store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True, lease_s=30)
    assert not answer.acquired and answer.expired == []
    assert not store.renew_lease(LOCK, "never-held", 30)


def test_release_is_idempotent_and_frees_the_lock(store: ResourceStore) -> None:
    store.release_lease(LOCK, "never-held")
    assert store.acquire_lease(LOCK, "a", holder("a"), exclusive=True, lease_s=30).acquired
    store.release_lease(LOCK, "a")
    store.release_lease(LOCK, "a")
    assert not store.renew_lease(LOCK, "a", 30)
    answer = store.acquire_lease(LOCK, "b", holder("b"), exclusive=True, lease_s=30)
    assert answer.acquired and answer.expired == []


def test_of_concurrent_exclusive_acquires_exactly_one_wins(store: ResourceStore) -> None:
    wins: list[str] = []

    def acquire(token: str) -> None:
        if store.acquire_lease(LOCK, token, holder(token), exclusive=True, lease_s=30).acquired:
            wins.append(token)

    at_once(acquire, (f"t{i}" for i in range(12)))
    assert len(wins) == 1
    refused = store.acquire_lease(LOCK, "late", holder("late"), exclusive=False, lease_s=30)
    assert [h["owner"] for h in refused.holders] == wins


def test_concurrent_shared_acquires_all_hold(store: ResourceStore) -> None:
    tokens = [f"t{i}" for i in range(6)]
    at_once(lambda t: store.acquire_lease(LOCK, t, holder(t), exclusive=False, lease_s=30),
            tokens)
    refused = store.acquire_lease(LOCK, "x", holder("prune"), exclusive=True, lease_s=30)
    assert sorted(h["owner"] for h in refused.holders) == tokens


# --- bulk access: the scheduler's and the sweeper's ------------------------------------


def test_create_many_creates_each_name_once(store: ResourceStore) -> None:
    assert store.create(session("m-1"))
    made = store.create_many([session("m-1"), session("m-2"), session("m-3", "team")])
    assert list(made) == [False, True, True]
    assert sorted(s.name for s in store.list(BackupSession)) == ["m-1", "m-2", "m-3"]


def test_list_raw_hands_out_bytes_one_bad_object_cannot_spoil(store: ResourceStore) -> None:
    store.create(session("r-1"))
    store.create(session("r-2", "team"))
    store.patch_status(BackupSession, "r-1", "default", {"phase": "Running"})
    listed = store.list_raw(BackupSession)
    assert [(o.namespace, o.name) for o in listed] == [("default", "r-1"), ("team", "r-2")]
    assert json.loads(listed[0].body)["spec"]["invoker"]["name"] == "nightly"
    assert json.loads(listed[0].status or b"{}") == {"phase": "Running"}
    assert listed[1].status is None
    assert [o.name for o in store.list_raw(BackupSession, "team")] == ["r-2"]


def test_generation_moves_with_objects_not_status_or_is_unknown(store: ResourceStore) -> None:
    before = store.generation(BackupSession)
    store.create(session("g-1"))
    created = store.generation(BackupSession)
    store.patch_status(BackupSession, "g-1", "default", {"phase": "Running"})
    if before is None:  # the store cannot tell (Kubernetes): the scheduler lists every tick
        assert created is None and store.generation(BackupSession) is None
        return
    assert created != before and store.generation(BackupSession) == created
    store.delete(BackupSession, "g-1", "default")
    assert store.generation(BackupSession) != created


def test_a_session_created_while_redis_collects_a_configuration_goes_too(
        redis_url: str) -> None:
    """The sessions' index is watched while they are read: one a beat adds meanwhile
    makes the delete read again, and it goes with the rest."""
    from beat.dispatch import new_backup_session

    class Racing(RedisStore):
        raced = False

        def _dependants(self, *args: Any) -> Any:
            found = super()._dependants(*args)
            if not self.raced:  # another beat creates a session between read and delete
                self.raced = True
                other = RedisStore.from_url(redis_url)
                owner = other.get(BackupConfiguration, "nightly", "default")
                assert new_backup_session(other, "nightly", "default", 300, owner=owner)
            return found

    store = Racing.from_url(redis_url)
    sessions_of(store, "nightly")
    store.delete(BackupConfiguration, "nightly", "default")
    assert store.raced and store.list(BackupSession, "default") == []
