"""How beat learns which configurations changed, against a real Redis and the fake
Kubernetes API: everything once, then only what changed; writers that bypass the store
are still seen within ``RELIST_EVERY_S``; a log that no longer reaches back lists again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from workers.state import redis as redis_state
from workers.state.base import Batch
from workers.state.feeds import RELIST_EVERY_S, ChangeLogFeed, WatchFeed
from workers.state.kube import KubeStore
from workers.state.redis import RedisStore
from workflows.parsing import parse_resource
from workflows.resources import BackupConfiguration, BackupSession

NS = "feeds"
#: Seconds a watch event gets to reach the feed's thread.
WATCH_WAIT_S = 10.0


def config(name: str, schedule: str = "0 3 * * *", namespace: str = NS) -> BackupConfiguration:
    resource = parse_resource({
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": schedule, "repository": {"name": "repo"},
                 "target": {"ref": {"name": "db"}}}}, source="test")
    assert isinstance(resource, BackupConfiguration)
    return resource


def names(batch: Batch) -> set[str]:
    return {obj.name for obj in batch.objects}


class CountingStore(RedisStore):
    """The Redis store, counting the objects each read fetches."""

    fetched: int = 0

    def get_raw_many(self, cls: Any, refs: Any) -> Any:
        self.fetched += len(refs)
        return super().get_raw_many(cls, refs)

    def list_raw(self, cls: Any, namespace: str | None = None) -> Any:
        objects = super().list_raw(cls, namespace)
        self.fetched += len(objects)
        return objects


@pytest.fixture
def store(redis_url: str) -> CountingStore:
    return CountingStore(redis.Redis.from_url(redis_url))


def test_redis_everything_first_then_only_what_changed(store: CountingStore) -> None:
    for i in range(50):
        store.apply(config(f"c{i}"))
    store.apply(config("elsewhere", namespace="other"))
    feed = store.feed(BackupConfiguration, NS)
    assert isinstance(feed, ChangeLogFeed)
    first = feed.read(0.0)
    assert first.complete and len(first.objects) == 50
    store.fetched = 0
    assert names(feed.read(1.0)) <= {f"c{i}" for i in range(50)}  # the rolling slice
    assert store.fetched <= 5  # a slice (SSCAN's COUNT is a hint), not the 50
    store.apply(config("c7", "0 4 * * *"))
    store.apply(config("new"))
    store.apply(config("elsewhere", "0 5 * * *", namespace="other"))
    store.delete(BackupConfiguration, "c9", NS)
    batch = feed.read(2.0)
    assert not batch.complete
    assert {"c7", "new"} <= names(batch) and batch.deleted == {(NS, "c9")}
    assert len(batch.objects) <= 2 + 5  # the changes, and a slice


def test_redis_writers_that_bypass_the_store_are_seen_within_the_relist_time(
        store: CountingStore) -> None:
    for i in range(30):
        store.apply(config(f"c{i}"))
    feed = store.feed(BackupConfiguration, NS)
    feed.read(0.0)
    client: redis.Redis = store._redis
    client.set(f"stashq:res:BackupConfiguration:{NS}:c3", b'{"edited": "by hand"}')
    client.set(f"stashq:res:BackupConfiguration:{NS}:sneaked", b'{"added": "by hand"}')
    client.sadd("stashq:index:BackupConfiguration", f"{NS}/sneaked")
    client.delete(f"stashq:res:BackupConfiguration:{NS}:c5")
    client.srem("stashq:index:BackupConfiguration", f"{NS}/c5")
    seen: set[str] = set()
    deleted: set[tuple[str, str]] = set()
    largest = 0
    for second in range(1, int(RELIST_EVERY_S) + 2):
        store.fetched = 0
        batch = feed.read(float(second))
        largest = max(largest, store.fetched)
        seen |= {o.name for o in batch.objects if b"by hand" in o.body}
        deleted |= batch.deleted
    assert seen == {"c3", "sneaked"} and deleted == {(NS, "c5")}
    assert largest <= 8  # spread over the ticks, never one listing of the 30


def test_redis_a_log_trimmed_past_the_cursor_lists_everything_again(
        store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.apply(config("a"))
    feed = store.feed(BackupConfiguration, NS)
    feed.read(0.0)
    monkeypatch.setattr(redis_state, "CHANGES_KEPT", 1)
    for i in range(300):  # approximate trimming keeps whole nodes: write well past them
        store.apply(config(f"b{i}", namespace="other"))
    store.apply(config("c"))
    batch = feed.read(1.0)
    assert batch.complete and names(batch) == {"a", "c"}


# --- Kubernetes ----------------------------------------------------------------------


@pytest.fixture
def kube_store(kubeconfig: Path) -> KubeStore:
    return KubeStore.from_kubeconfig(str(kubeconfig))


@pytest.fixture
def watch_feed(kube_store: KubeStore) -> Iterator[WatchFeed]:
    feed = kube_store.feed(BackupConfiguration, NS)
    assert isinstance(feed, WatchFeed)
    yield feed
    feed.stop()


def eventually(read: Callable[[], Batch], done: Callable[[Batch], bool]) -> Batch:
    """Read until ``done`` holds for what was read so far, merged."""
    merged = Batch()
    deadline = time.monotonic() + WATCH_WAIT_S
    while not done(merged):
        assert time.monotonic() < deadline, f"the watch did not bring it: {merged}"
        batch = read()
        merged.objects += batch.objects
        merged.deleted |= batch.deleted
        time.sleep(0.05)
    return merged


def test_kubernetes_lists_once_then_takes_what_the_watch_brings(
        kube_store: KubeStore, watch_feed: WatchFeed) -> None:
    kube_store.apply(config("a"))
    kube_store.apply(config("b"))
    first = watch_feed.read(0.0)
    assert first.complete and names(first) == {"a", "b"}
    kube_store.apply(config("a", "0 4 * * *"))
    kube_store.delete(BackupConfiguration, "b", NS)
    batch = eventually(lambda: watch_feed.read(1.0),
                       lambda b: "a" in names(b) and (NS, "b") in b.deleted)
    assert not batch.complete
    assert watch_feed.read(2.0) == Batch()  # nothing more happened


def test_kubernetes_beat_schedules_what_the_watch_brings(kube_store: KubeStore) -> None:
    """The scheduler on the Kubernetes store: a configuration applied after its first
    tick is scheduled from the watch, with no listing per tick."""
    from beat.scheduler import Scheduler
    from tests.integration.test_beat import ManualClock

    t0 = 1735732800.0  # 12:00:00Z, a slot of "* * * * *"
    clock = ManualClock(t0 - 30)
    scheduler = Scheduler(kube_store, lambda ref: None, clock=clock, namespace=NS)
    try:
        scheduler.run(_iterations=1)
        assert isinstance(scheduler.configs.feed, WatchFeed) and not scheduler.configs.entries
        kube_store.apply(config("minutely", "* * * * *"))
        deadline = time.monotonic() + WATCH_WAIT_S
        while (NS, "minutely") not in scheduler.configs.entries:
            assert time.monotonic() < deadline, "the watch did not bring the configuration"
            time.sleep(0.05)
            scheduler.run(_iterations=1)
        while clock.t < t0 + 1:
            scheduler.run(_iterations=1)
        sessions = {s.name: s for s in kube_store.list(BackupSession, NS)}
        made = sessions[f"minutely-{int(t0)}"]
        owner = kube_store.get(BackupConfiguration, "minutely", NS)
        assert made.metadata.model_extra is not None
        assert [(o["kind"], o["name"], o["uid"]) for o in
                made.metadata.model_extra["ownerReferences"]] == [
            ("BackupConfiguration", "minutely", (owner.metadata.model_extra or {})["uid"])]
        kube_store.delete(BackupConfiguration, "minutely", NS)  # its sessions go with it
        assert kube_store.list(BackupSession, NS) == []
    finally:
        scheduler.stop()


def test_a_configuration_deleted_while_beat_takes_in_its_batch_spoils_nothing(
        store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleted between the feed's read and its status write (``Ready``): the rest of the
    batch is still taken in, and the next read drops it."""
    from beat.configurations import Configurations

    namespace = f"gone-{time.time_ns()}"
    for name in ("a", "b", "c"):
        store.apply(config(name, namespace=namespace))
    configs = Configurations(store, namespace)
    read = configs.feed.read
    deleted: list[str] = []

    def read_then_delete(now: float) -> Batch:
        batch = read(now)
        deleted.append(batch.objects[0].name)  # the first one whose status beat writes
        store.delete(BackupConfiguration, deleted[0], namespace)
        return batch

    monkeypatch.setattr(configs.feed, "read", read_then_delete)
    configs.refresh(0.0)
    assert {name for _, name in configs.entries} == {"a", "b", "c"}
    monkeypatch.setattr(configs.feed, "read", read)
    configs.refresh(1.0)
    kept = {"a", "b", "c"} - set(deleted)
    assert {name for _, name in configs.entries} == kept
    assert {store.get(BackupConfiguration, name, namespace).status["phase"]
            for name in kept} == {"Ready"}
