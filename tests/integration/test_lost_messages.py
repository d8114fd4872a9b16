"""No session stays Pending for ever, and none runs twice (issue 18), on both stores.

The story: a session is queued while no worker runs; the broker's Redis database is
emptied (what a restart of a Redis without persistence does); a worker starts. Its
sweep finds the session Pending past ``pending_timeout_s`` with its message gone, and
queues it again: it ends Succeeded once, with one snapshot. And the other way round:
a message queued twice (the re-queue while the original is still on the queue) runs
the chain once; the superseded copy says so in the log and does nothing.

Each case runs against the Redis store and against the Kubernetes store (the fake API
server, through the real ``kubernetes`` client); the broker is a Redis db of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from beat.dispatch import dispatch
from devstack.resources import local_setup
from devstack.servers import MariaDBServer
from devstack.stack import Worker
from workers.app import create_app
from workers.context import SessionRef
from workers.state.base import ResourceStore
from workers.state.kube import KubeStore
from workers.state.redis import RedisStore
from workers.sweeper import StaleSweeper
from workflows.parsing import parse_resource
from workflows.phases import FINAL_PHASES
from workflows.resources import BackupSession
from workflows.settings import Settings

T = TypeVar("T")
NS = "demo"
#: Seconds a whole backup story may take before the test gives up waiting.
STORY_S = 90.0
#: A session still Pending this long after it was queued is looked at by the sweep.
PENDING_TIMEOUT_S = 1.0


@dataclass
class Setup:
    """One store, a broker db of its own, the resources of one backup, a worker env."""

    store: ResourceStore
    env: dict[str, str]
    repo_dir: Path
    tmp_path: Path
    workers: list[Worker]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def queue_session(self, name: str) -> SessionRef:
        """What ``stashq backup`` and the watcher do: create the session, dispatch it."""
        assert self.store.create(BackupSession.model_validate({
            "apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"invoker": {"name": "nightly"}}, "status": {"phase": "Pending"}}))
        ref = SessionRef("BackupSession", NS, name)
        dispatch(create_app(self.settings), self.store, self.settings, ref)
        return ref

    def start_worker(self) -> Worker:
        worker = Worker(self.env, self.tmp_path / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        worker.start()
        return worker

    def status(self, name: str) -> dict[str, Any]:
        return self.store.get(BackupSession, name, NS).status

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def snapshots(self) -> list[str]:
        return sorted(p.name for p in self.repo_dir.rglob("snapshots/*.json"))

    def broker_messages(self) -> list[dict[str, Any]]:
        with redis.Redis.from_url(self.env["STASHQ_BROKER_URL"]) as broker:
            return [json.loads(m) for key in broker.keys("stashq.*")
                    if broker.type(key) == b"list" for m in broker.lrange(key, 0, -1)]


def eventually(check: Callable[[], T], what: str, setup: Setup) -> T:
    deadline = time.monotonic() + STORY_S
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; workers said:\n"
                                 f"{setup.logs()[-4000:]}")
        time.sleep(0.2)
    return value


@pytest.fixture(params=["redis", "kubernetes"])
def setup(request: pytest.FixtureRequest, broker_url: str, mariadb_server: MariaDBServer,
          database: str, tmp_path: Path) -> Iterator[Setup]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "STASHQ_BROKER_URL": broker_url, "STASHQ_NAMESPACE": NS, "STASHQ_DB_WAIT_S": "2",
           "STASHQ_PENDING_TIMEOUT_S": str(PENDING_TIMEOUT_S),
           "STASHQ_STALE_SWEEP_INTERVAL_S": "0.5", "STASHQ_HEARTBEAT_TIMEOUT_S": "60"}
    store: ResourceStore
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        env |= {"STASHQ_STORE": "redis", "STASHQ_REDIS_URL": redis_url}
        store = RedisStore.from_url(redis_url)
    else:
        kubeconfig = request.getfixturevalue("kubeconfig")
        env |= {"STASHQ_STORE": "kubernetes", "STASHQ_KUBECONFIG": str(kubeconfig)}
        store = KubeStore.from_kubeconfig(str(kubeconfig))
    with mariadb_server.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, v TEXT)")
        cursor.execute(f"INSERT INTO `{database}`.t VALUES (1, 'one'), (2, 'two')")
        conn.commit()
    repo_dir = tmp_path / "repo"
    for doc in local_setup(mariadb_server, database, repo_dir, NS):
        store.apply(parse_resource(doc))
    made = Setup(store, env, repo_dir, tmp_path, [])
    yield made
    for worker in made.workers:
        worker.stop()


def final_status(setup: Setup, name: str) -> dict[str, Any]:
    return eventually(lambda: (s := setup.status(name)).get("phase") in FINAL_PHASES and s,
                      f"{name} to finish", setup)


def test_a_session_whose_message_the_broker_lost_runs_once_when_a_worker_comes(
        setup: Setup) -> None:
    ref = setup.queue_session("nightly-lost")
    queued = setup.status(ref.name)
    assert queued["phase"] == "Pending" and queued["queueToken"]
    assert [m["headers"]["root_id"] for m in setup.broker_messages()] == [queued["queueToken"]]

    with redis.Redis.from_url(setup.env["STASHQ_BROKER_URL"]) as broker:
        broker.flushdb()  # a Redis without persistence restarted: the message is gone
    time.sleep(PENDING_TIMEOUT_S + 0.2)
    setup.start_worker()  # its sweep finds the session Pending, its message gone

    final = final_status(setup, ref.name)
    assert final["phase"] == "Succeeded", final
    assert final["requeued"] == 1
    assert "its message is no longer on the broker" in final["lastRequeue"]["reason"]
    assert final["queueToken"] != queued["queueToken"]
    assert setup.snapshots() == [f"{ref.name}.json"]
    assert setup.logs().count("step stashq.dump_upload started") == 1


def test_a_session_queued_twice_runs_once_and_the_copy_says_it_was_superseded(
        setup: Setup) -> None:
    ref = setup.queue_session("nightly-twice")
    original = setup.status(ref.name)["queueToken"]
    # The sweep re-queues while the original is still on the queue (here: it could not
    # read the broker, so it cannot know, and bounds the copies instead).
    settings = setup.settings
    sweeper = StaleSweeper(create_app(settings), setup.store, settings,
                           clock=lambda: time.time() + 3600)
    verdict = sweeper.handle(ref, queued=None)
    assert verdict is not None and verdict.action == "requeue"
    again = setup.status(ref.name)["queueToken"]
    assert sorted(m["headers"]["root_id"] for m in setup.broker_messages()) \
        == sorted([original, again])

    setup.start_worker()
    final = final_status(setup, ref.name)
    assert final["phase"] == "Succeeded", final
    assert setup.snapshots() == [f"{ref.name}.json"]
    eventually(lambda: "superseded: the session was queued again" in setup.logs(),
               "the original message to stop", setup)
    logs = setup.logs()
    assert logs.count("step stashq.precheck started") == 1
    assert logs.count("step stashq.dump_upload started") == 1
    assert final["claimedBy"] == again


def test_a_session_waiting_for_a_worker_is_not_copied_and_says_so(setup: Setup) -> None:
    ref = setup.queue_session("nightly-waits")
    settings = setup.settings
    sweeper = StaleSweeper(create_app(settings), setup.store, settings,
                           clock=lambda: time.time() + 600)
    for _ in range(3):  # every sweep: still queued, so no copy, only the note
        assert [verdict.action for _, verdict in sweeper.sweep()] == ["wait"]
    status = setup.status(ref.name)
    assert status["phase"] == "Pending" and "requeued" not in status
    assert status["waiting"].startswith("waiting for a worker: queued at ")
    assert "no worker is consuming it (start one: stashq worker)" in status["waiting"]
    assert len(setup.broker_messages()) == 1

    setup.start_worker()
    final = final_status(setup, ref.name)
    assert final["phase"] == "Succeeded", final
    assert "waiting" not in final
    assert setup.snapshots() == [f"{ref.name}.json"]
