"""The watcher against the fake API server, through the real ``kubernetes`` client: every
new session becomes exactly one queued chain — across dropped watches, 410 Gone,
restarts and two watchers — and a bad object is reported without stopping anything.

Queued chains are counted by a dispatch that records each call and writes what the
real ``dispatch`` writes (``taskId``, ``queuedAt``); the last test runs the real
dispatch, a real worker with ``STASHQ_STORE=kubernetes`` and the ``stashq`` CLI.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from beat.dispatch import new_backup_session
from beat.watcher import Watcher, WatchSettings, session_state
from devstack.compare import differences
from devstack.resources import local_setup
from devstack.sample import create_sample
from devstack.servers import MariaDBServer
from devstack.stack import STASHQ, Worker
from tests.kube import FakeKubeAPI
from workers.context import SessionRef
from workers.state.kube import KubeStore
from workflows.parsing import parse_resource
from workflows.resources import BackupSession, RestoreSession

NS = "demo"
#: Short enough that tests never wait on a watch; backoff in tens of milliseconds.
FAST = WatchSettings(watch_timeout_s=2, backoff_initial_s=0.02, backoff_max_s=0.1,
                     stale_claim_s=60)
#: Seconds a test waits for the watcher to catch up before it fails.
CATCH_UP_S = 15.0


class Dispatches:
    """A dispatch that counts: one call per queued chain, per session."""

    def __init__(self, store: KubeStore, fail: bool = False) -> None:
        self.store, self.fail = store, fail
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, ref: SessionRef) -> str:
        with self._lock:
            self.calls[str(ref)] += 1
        if self.fail:
            raise ConnectionError("broker down")
        task_id = uuid.uuid4().hex
        self.store.patch_status(ref.cls, ref.name, ref.namespace,
                                {"phase": "Pending", "queuedAt": "now", "taskId": task_id})
        return task_id

    def names(self) -> set[str]:
        return {ref.rsplit("/", 1)[1] for ref in self.calls}


def eventually(check: Callable[[], bool], what: str, timeout_s: float = CATCH_UP_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def running(watcher: Watcher, api: FakeKubeAPI) -> Iterator[Watcher]:
    thread = threading.Thread(target=watcher.run, name="watcher")
    thread.start()
    try:
        yield watcher
    finally:
        watcher.stop()
        api.drop_watches()
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def store(kubeconfig: Path) -> KubeStore:
    return KubeStore.from_kubeconfig(str(kubeconfig))


def kubectl_session(api: FakeKubeAPI, name: str, **spec: Any) -> None:
    """A BackupSession as ``kubectl create`` makes it: no status at all."""
    api.create({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"invoker": {"name": "nightly"}, **spec}})


def restore_session(name: str) -> RestoreSession:
    resource = parse_resource({
        "apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"repository": {"name": "repo"}, "target": {"ref": {"name": "db"}}}})
    assert isinstance(resource, RestoreSession)
    return resource


def status(store: KubeStore, name: str, cls: type[BackupSession] | type[RestoreSession]
           = BackupSession) -> dict[str, Any]:
    return store.get(cls, name, NS).status


def raw_status(api: FakeKubeAPI, name: str) -> dict[str, Any]:
    """The status of an object the parser would refuse, as kubectl shows it."""
    return dict(api.get("stashq.io/v1alpha1", "BackupSession", name, NS).get("status") or {})


def test_each_new_session_is_queued_once_whoever_created_it(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    dispatches = Dispatches(store)
    with running(Watcher(store, dispatches, settings=FAST, identity="w-1"), kube_api):
        new_backup_session(store, "nightly", NS, 100)  # beat / `stashq trigger`
        kubectl_session(kube_api, "by-kubectl")  # no status at all
        store.create(restore_session("restore-1").model_copy(
            update={"status": {"phase": "Pending"}}))
        new_backup_session(store, "nightly", NS, 200, status={"phase": "Skipped"})
        eventually(lambda: len(dispatches.calls) == 3, "three sessions queued")
        time.sleep(0.3)  # room for a wrong second dispatch
    assert dispatches.calls == {"BackupSession/demo/nightly-100": 1,
                                "BackupSession/demo/by-kubectl": 1,
                                "RestoreSession/demo/restore-1": 1}
    queued = status(store, "by-kubectl")
    assert queued["claim"]["by"] == "w-1" and queued["taskId"]
    assert status(store, "nightly-200") == {"phase": "Skipped"}  # never looked Pending


def test_a_dropped_watch_and_410_lose_no_session_and_queue_none_twice(
        store: KubeStore, kube_api: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="beat.watcher")
    dispatches = Dispatches(store)
    with running(Watcher(store, dispatches, settings=FAST), kube_api):
        new_backup_session(store, "nightly", NS, 1)
        eventually(lambda: dispatches.names() == {"nightly-1"}, "nightly-1 queued")

        # The connection drops, and the API refuses watches for a while: sessions
        # created meanwhile arrive when the watch resumes from its last version.
        kube_api.inject("GET", "/backupsessions", 500, times=3)
        kube_api.drop_watches()
        new_backup_session(store, "nightly", NS, 2)
        kubectl_session(kube_api, "manual-1")
        eventually(lambda: dispatches.names() >= {"nightly-2", "manual-1"}, "resumed")
        resumed = kube_api.watch_requests("backupsessions")[-1]
        assert int(resumed["resourceVersion"]) > 0

        # History is compacted while the watch is down: 410, a fresh list, nothing lost.
        kube_api.compact()
        kube_api.drop_watches()
        new_backup_session(store, "nightly", NS, 3)
        eventually(lambda: "nightly-3" in dispatches.names(), "nightly-3 after a relist")
        time.sleep(0.3)
    assert dispatches.calls == {f"BackupSession/demo/{n}": 1
                                for n in ("nightly-1", "nightly-2", "manual-1", "nightly-3")}
    assert "too old resource version" in caplog.text and "listing again" in caplog.text
    assert "Response ended prematurely" in caplog.text


def test_a_restarted_watcher_queues_only_what_is_new(store: KubeStore,
                                                     kube_api: FakeKubeAPI) -> None:
    dispatches = Dispatches(store)
    with running(Watcher(store, dispatches, settings=FAST), kube_api):
        new_backup_session(store, "nightly", NS, 1)
        eventually(lambda: len(dispatches.calls) == 1, "first session queued")
    new_backup_session(store, "nightly", NS, 2)  # while no watcher runs
    with running(Watcher(store, dispatches, settings=FAST), kube_api):
        eventually(lambda: len(dispatches.calls) == 2, "second session queued")
        time.sleep(0.3)
    assert set(dispatches.calls.values()) == {1}


def test_two_watchers_queue_each_session_once(store: KubeStore, kube_api: FakeKubeAPI) -> None:
    dispatches = Dispatches(store)
    names = [f"burst-{i}" for i in range(30)]
    with running(Watcher(store, dispatches, settings=FAST, identity="w-a"), kube_api), \
            running(Watcher(store, dispatches, settings=FAST, identity="w-b"), kube_api):
        creators = [threading.Thread(target=kubectl_session, args=(kube_api, n))
                    for n in names]
        for t in creators:
            t.start()
        for t in creators:
            t.join()
        eventually(lambda: len(dispatches.calls) == len(names), "every session queued")
        kube_api.drop_watches()  # both resume and replay: still nothing twice
        time.sleep(0.5)
    assert dispatches.names() == set(names) and set(dispatches.calls.values()) == {1}
    claimers = {status(store, n)["claim"]["by"] for n in names}
    assert claimers <= {"w-a", "w-b"}


def test_a_bad_object_gets_a_condition_and_the_watcher_keeps_going(
        store: KubeStore, kube_api: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    dispatches = Dispatches(store)
    with running(Watcher(store, dispatches, settings=FAST), kube_api):
        kubectl_session(kube_api, "bad-1", invoker={"name": "Not_A_Name"})
        kube_api.create({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
                         "metadata": {"name": "bad-cron", "namespace": NS},
                         "spec": {"schedule": "61 * * * *", "repository": {"name": "r"},
                                  "target": {"ref": {"name": "db"}}}})
        kubectl_session(kube_api, "good-1")
        eventually(lambda: raw_status(kube_api, "bad-1").get("phase") == "Failed",
                   "bad-1 reported")
        eventually(lambda: "good-1" in dispatches.names(), "good-1 queued")
        time.sleep(0.3)
    bad = raw_status(kube_api, "bad-1")
    assert bad["reason"] == ('namespace demo: BackupSession "bad-1": spec.invoker.name: '
                             '"Not_A_Name" does not match ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')
    assert bad["conditions"] == {"ValidationPassed": "False"}
    assert "bad-1" not in dispatches.names()
    assert 'BackupConfiguration "bad-cron": spec.schedule: "61 * * * *" is not a cron' \
        in caplog.text


def test_a_claim_whose_watcher_died_ends_failed_with_the_reason(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    store.create(parse_resource({
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": "orphan-1", "namespace": NS},
        "spec": {"invoker": {"name": "nightly"}},
        "status": {"phase": "Pending",
                   "claim": {"by": "node-7/41/dead", "at": "2020-01-01T00:00:00Z"}}}))
    dispatches = Dispatches(store)
    with running(Watcher(store, dispatches, settings=FAST), kube_api):
        eventually(lambda: status(store, "orphan-1")["phase"] == "Failed", "orphan failed")
    assert "node-7/41/dead" in status(store, "orphan-1")["reason"]
    assert not dispatches.calls


def test_a_session_that_cannot_be_queued_fails_once_with_the_reason(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    dispatches = Dispatches(store, fail=True)
    with running(Watcher(store, dispatches, settings=FAST), kube_api):
        new_backup_session(store, "nightly", NS, 1)
        eventually(lambda: status(store, "nightly-1").get("phase") == "Failed", "failed")
        time.sleep(0.3)
    assert status(store, "nightly-1")["reason"] == (
        "could not be queued: ConnectionError: broker down")
    assert dispatches.calls == {"BackupSession/demo/nightly-1": 1}


def test_unknown_event_types_are_logged_loudly_and_skipped(
        store: KubeStore, caplog: pytest.LogCaptureFixture) -> None:
    dispatches = Dispatches(store)
    watcher = Watcher(store, dispatches, settings=FAST)
    watcher.handle_event("BackupSession", {"type": "SURPRISE", "object": {"metadata": {}}})
    watcher.handle_event("BackupSession", {"type": "BOOKMARK", "object": {"metadata": {
        "resourceVersion": "7"}}})
    [record] = [r for r in caplog.records if r.name == "beat.watcher"]
    assert record.levelno == logging.ERROR and "unknown type 'SURPRISE'" in record.message
    assert not dispatches.calls


@pytest.mark.parametrize(("raw", "state"), [
    ({}, "new"),
    ({"status": {"phase": "Pending"}}, "new"),
    ({"metadata": {"annotations": {"stashq.io/initial-phase": "Skipped"}}}, "done"),
    ({"status": {"phase": "Pending", "taskId": "t"}}, "done"),
    ({"status": {"phase": "Running"}}, "done"),
    ({"status": {"claim": {"by": "w", "at": "2030-01-01T00:00:00Z"}}}, "claimed"),
    ({"status": {"claim": {"by": "w", "at": "2020-01-01T00:00:00Z"}}}, "stale"),
    ({"status": {"claim": {"by": "w", "at": "yesterday"}}}, "stale"),
])
def test_session_state_is_read_from_the_object_alone(raw: dict[str, Any], state: str) -> None:
    now = 1_893_456_000.0  # 2030-01-01T00:00:00Z
    assert session_state(raw, now + 10, stale_claim_s=60) == state


def test_the_watch_loop_runs_as_many_requests_as_asked(store: KubeStore,
                                                       kube_api: FakeKubeAPI) -> None:
    watcher = Watcher(store, Dispatches(store), settings=FAST)
    watcher.watch_kind("BackupSession", _iterations=1)  # a list, nothing else
    assert watcher.versions["BackupSession"]
    assert kube_api.watch_requests("backupsessions") == []


# --- end to end: CLI → fake API → watcher → Redis → real worker (STASHQ_STORE=kubernetes) --


def worker_env(store: KubeStore, kubeconfig: Path, redis_url: str,
               mariadb_server: MariaDBServer, database: str, tmp_path: Path,
               **extra: str) -> dict[str, str]:
    """A sample database, its resources applied, and a worker's environment."""
    with mariadb_server.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=20)
    for doc in local_setup(mariadb_server, database, tmp_path / "repo", NS):
        store.apply(parse_resource(doc))
    return {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "STASHQ_STORE": "kubernetes", "STASHQ_KUBECONFIG": str(kubeconfig),
            "STASHQ_NAMESPACE": NS, "STASHQ_BROKER_URL": redis_url,
            "STASHQ_DB_WAIT_S": "2", "TMPDIR": str(tmp_path), "HOME": str(tmp_path), **extra}


def dispatcher(store: KubeStore, env: dict[str, str],
               calls: list[str]) -> Callable[[SessionRef], str]:
    """The real dispatch (to the worker's broker), recording each session it queues."""
    from beat.dispatch import dispatch
    from workers.app import create_app
    from workflows.settings import Settings

    settings = Settings.from_env(env)
    app = create_app(settings)

    def real_dispatch(ref: SessionRef) -> str:
        calls.append(str(ref))
        return dispatch(app, store, settings, ref)

    return real_dispatch


def trigger_nightly(env: dict[str, str]) -> str:
    """``stashq trigger nightly``: the BackupSession it created."""
    triggered = subprocess.run([STASHQ, "trigger", "nightly"], env=env,
                               capture_output=True, text=True, timeout=60)
    assert triggered.returncode == 0, triggered.stderr
    return triggered.stdout.split("BackupSession/")[1].split()[0]


def test_a_session_created_through_the_api_is_run_by_a_real_worker(
        store: KubeStore, kube_api: FakeKubeAPI, kubeconfig: Path, redis_url: str,
        mariadb_server: MariaDBServer, database: str, tmp_path: Path) -> None:
    env = worker_env(store, kubeconfig, redis_url, mariadb_server, database, tmp_path)
    calls: list[str] = []
    real_dispatch = dispatcher(store, env, calls)
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        with running(Watcher(store, real_dispatch, settings=FAST), kube_api):
            name = trigger_nightly(env)
            owners = store.get(BackupSession, name, NS).metadata.model_extra or {}
            assert [o["name"] for o in owners["ownerReferences"]] == ["nightly"]
            eventually(lambda: status(store, name).get("phase") in ("Succeeded", "Failed"),
                       "the backup to finish", timeout_s=120)
            assert status(store, name)["phase"] == "Succeeded", status(store, name)
            assert status(store, name)["snapshot"]["name"] == name
            # written after the session's own phase, by the same step
            eventually(lambda: last_shown(store) is not None, "lastBackup", timeout_s=30)
            assert last_shown(store)["session"] == name, last_shown(store)
            assert last_shown(store)["phase"] == "Succeeded"

            restored = f"{database}_restored"
            kube_api.create({"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
                             "metadata": {"name": "restore-1", "namespace": NS},
                             "spec": {"repository": {"name": "repo"},
                                      "target": {"ref": {"name": "db"}},
                                      "task": {"params": [{"name": "database",
                                                           "value": restored}]}}})
            eventually(lambda: status(store, "restore-1", RestoreSession).get("phase")
                       in ("Succeeded", "Failed"), "the restore to finish", timeout_s=120)
            assert status(store, "restore-1", RestoreSession)["phase"] == "Succeeded"
            told_by_worker(kube_api, name, "restore-1")
        log = worker.log()  # before the stop, whose SIGTERM to the pool logs its own
    finally:
        worker.stop()
    assert calls == [f"BackupSession/{NS}/{name}", f"RestoreSession/{NS}/restore-1"]
    with mariadb_server.connect() as conn:
        assert differences(conn, database, restored) == []
        conn.cursor().execute(f"DROP DATABASE `{restored}`")
    assert "Traceback" not in log


def test_deleting_the_configuration_mid_backup_deletes_the_session_and_the_worker_stops(
        store: KubeStore, kube_api: FakeKubeAPI, kubeconfig: Path, redis_url: str,
        mariadb_server: MariaDBServer, database: str, tmp_path: Path) -> None:
    from workflows.resources import BackupConfiguration

    env = worker_env(store, kubeconfig, redis_url, mariadb_server, database, tmp_path,
                     STASHQ_PAUSE_AT="before_manifest:3")
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        with running(Watcher(store, dispatcher(store, env, []), settings=FAST), kube_api):
            name = trigger_nightly(env)
            eventually(lambda: "test pause at before_manifest" in worker.log(),
                       "the dump to reach its pause", timeout_s=120)
            store.delete(BackupConfiguration, "nightly", NS)  # kubectl delete bc nightly
            assert store.list(BackupSession, NS) == []  # collected with it
            eventually(lambda: f"BackupSession/{NS}/{name} was deleted while it ran"
                       in worker.log(), "the worker to stop the chain", timeout_s=60)
            log = worker.log()
    finally:
        worker.stop()
    assert "Traceback" not in log
    assert "chain stopped" in log and "step stashq.update_status done" not in log
    assert store.list(BackupSession, NS) == []  # nothing wrote the session back


def test_exec_hooks_of_a_backup_run_in_the_pod_through_the_api_from_a_real_worker(
        store: KubeStore, kube_api: FakeKubeAPI, kubeconfig: Path, redis_url: str,
        mariadb_server: MariaDBServer, database: str, tmp_path: Path) -> None:
    from workflows.resources import BackupConfiguration

    env = worker_env(store, kubeconfig, redis_url, mariadb_server, database, tmp_path)
    kube_api.create({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "db-0", "namespace": NS, "labels": {"app": "db"}},
                     "spec": {"containers": [
                         {"name": "mariadb", "env": [{"name": "IN", "value": "mariadb"}]},
                         {"name": "exporter", "env": []}]},
                     "status": {"phase": "Running",
                                "conditions": [{"type": "Ready", "status": "True"}]}})
    freeze = ["/bin/sh", "-c", 'echo "froze writes in $IN"']
    thaw = ["/bin/sh", "-c", 'echo "thawed in $IN"']
    config = store.get(BackupConfiguration, "nightly", NS)
    where = {"pod": {"matchLabels": {"app": "db"}}, "containerName": "mariadb"}
    hooks = {"preBackup": [{"name": "freeze", "exec": {"command": freeze}, **where}],
             "postBackup": [{"name": "thaw", "exec": {"command": thaw}, **where,
                             "executionPolicy": "Always"}]}
    raw = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["spec"]["hooks"] = hooks
    store.apply(parse_resource(raw))
    worker = Worker(env, tmp_path / "worker.log")
    worker.start()
    try:
        with running(Watcher(store, dispatcher(store, env, []), settings=FAST), kube_api):
            name = trigger_nightly(env)
            eventually(lambda: status(store, name).get("phase") in ("Succeeded", "Failed"),
                       "the backup to finish", timeout_s=120)
            eventually(lambda: bool((status(store, name).get("hooks") or {})
                                    .get("postBackup")), "the post hook", timeout_s=30)
        log = worker.log()
    finally:
        worker.stop()
    done = status(store, name)
    assert done["phase"] == "Succeeded", done
    assert kube_api.execs == [(NS, "db-0", "mariadb", freeze), (NS, "db-0", "mariadb", thaw)]
    ran = {phase: [(h["name"], h["phase"], h["output"].strip()) for h in done["hooks"][phase]]
           for phase in ("preBackup", "postBackup")}
    assert ran == {"preBackup": [("freeze", "Succeeded", "froze writes in mariadb")],
                   "postBackup": [("thaw", "Succeeded", "thawed in mariadb")]}
    assert "Traceback" not in log


def last_shown(store: KubeStore) -> Any:
    """The configuration's ``status.lastBackup`` (``kubectl get bc`` shows it)."""
    from workflows.resources import BackupConfiguration
    return store.get(BackupConfiguration, "nightly", NS).status.get("lastBackup")


def told_by_worker(api: FakeKubeAPI, backup: str, restore: str) -> None:
    """What ``kubectl describe`` shows of each session and of the configuration."""
    def story(kind: str, name: str) -> list[tuple[str, str, str]]:
        return [(e["type"], e["reason"], e["message"]) for e in api.events_about(kind, name, NS)]

    backed_up = story("BackupSession", backup)
    assert [(t, r) for t, r, _ in backed_up] == [
        ("Normal", "BackupSessionQueued"), ("Normal", "BackupSessionRunning"),
        ("Normal", "BackupSessionSucceeded")]
    assert re.fullmatch(rf"succeeded in [0-9.]+ s: snapshot {backup}", backed_up[-1][2])
    assert story("BackupConfiguration", "nightly") == [
        (t, r, f"BackupSession {backup}: {m}") for t, r, m in backed_up]
    assert [r for _, r, _ in story("RestoreSession", restore)] == [
        "RestoreSessionQueued", "RestoreSessionRunning", "RestoreSessionSucceeded"]


# --- the commands: stashq watch / trigger / pause / resume on Kubernetes -------------------


def kube_env(kubeconfig: Path, broker_url: str, tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
            "STASHQ_STORE": "kubernetes", "STASHQ_KUBECONFIG": str(kubeconfig),
            "STASHQ_NAMESPACE": NS, "STASHQ_BROKER_URL": broker_url}


def test_stashq_watch_queues_one_message_per_session(
        store: KubeStore, kube_api: FakeKubeAPI, kubeconfig: Path, redis_url: str,
        mariadb_server: MariaDBServer, tmp_path: Path) -> None:
    import redis

    for doc in local_setup(mariadb_server, "shop", tmp_path / "repo", NS):
        store.apply(parse_resource(doc))
    env = kube_env(kubeconfig, redis_url, tmp_path)
    log = (tmp_path / "watch.log").open("wb")
    proc = subprocess.Popen([STASHQ, "watch"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        kubectl_session(kube_api, "manual-1", invoker={"name": "nightly"})
        eventually(lambda: status(store, "manual-1").get("taskId"), "manual-1 queued")
        kube_api.drop_watches()
        kubectl_session(kube_api, "manual-2", invoker={"name": "nightly"})
        eventually(lambda: status(store, "manual-2").get("taskId"), "manual-2 queued")
        time.sleep(0.5)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    with redis.Redis.from_url(redis_url) as broker:
        messages = [m for key in broker.keys("stashq.control*")
                    for m in broker.lrange(key, 0, -1)]
    assert len(messages) == 2  # one chain (its first step's message) per session
    assert b"BackupSession/demo/manual-1" in b"".join(messages)


def test_watch_refuses_the_redis_store(tmp_path: Path) -> None:
    result = subprocess.run([STASHQ, "watch"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "the watcher needs the Kubernetes store: set STASHQ_STORE=kubernetes" in result.stderr


def test_stashq_delete_cascades_to_the_sessions_and_orphans_stay_listed(
        store: KubeStore, kube_api: FakeKubeAPI, kubeconfig: Path, mariadb_server: MariaDBServer,
        tmp_path: Path) -> None:
    """kubectl delete bc (Background) takes the sessions with it; --cascade=orphan leaves
    them, owned by nothing, and ``stashq sessions`` still reads them."""
    import json

    docs = local_setup(mariadb_server, "shop", tmp_path / "repo", NS)
    for doc in docs:
        store.apply(parse_resource(doc))
    env = kube_env(kubeconfig, "redis://127.0.0.1:1/0", tmp_path)

    def stashq(*args: str) -> str:
        result = subprocess.run([STASHQ, *args], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    kept = stashq("trigger", "nightly").split("BackupSession/")[1].split()[0]
    assert stashq("delete", "bc", "nightly", "--cascade=orphan") == \
        "BackupConfiguration/nightly deleted"
    listed = stashq("sessions")
    assert kept in listed and "Pending" in listed
    [shown] = json.loads(stashq("sessions", "-o", "json"))
    assert shown["metadata"]["name"] == kept and "ownerReferences" not in shown["metadata"]
    assert shown["spec"]["invoker"]["name"] == "nightly"

    store.apply(parse_resource(next(d for d in docs if d["kind"] == "BackupConfiguration")))
    collected = stashq("trigger", "nightly").split("BackupSession/")[1].split()[0]
    assert stashq("delete", "backupconfiguration", "nightly") == \
        "BackupConfiguration/nightly deleted"
    assert [s.name for s in store.list(BackupSession, NS)] == [kept]  # the orphan stays
    assert collected not in stashq("sessions")


def test_stashq_delete_deletes_an_object_that_no_longer_parses(
        kube_api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path) -> None:
    kube_api.create({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
                     "metadata": {"name": "bad-cron", "namespace": NS},
                     "spec": {"schedule": "61 * * * *", "repository": {"name": "r"},
                              "target": {"ref": {"name": "db"}}}})
    env = kube_env(kubeconfig, "redis://127.0.0.1:1/0", tmp_path)
    result = subprocess.run([STASHQ, "delete", "bc", "bad-cron", "bad-cron"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0  # the second time: gone, and said so
    assert result.stdout.strip() == "BackupConfiguration/bad-cron deleted"
    assert 'BackupConfiguration "bad-cron"' in result.stderr and "not found" in result.stderr
    with pytest.raises(Exception, match="404|not found|NotFound"):
        kube_api.get("stashq.io/v1alpha1", "BackupConfiguration", "bad-cron", NS)


def test_pause_and_resume_flip_spec_paused(store: KubeStore, kube_api: FakeKubeAPI,
                                           kubeconfig: Path, mariadb_server: MariaDBServer,
                                           tmp_path: Path) -> None:
    for doc in local_setup(mariadb_server, "shop", tmp_path / "repo", NS):
        store.apply(parse_resource(doc))
    env = kube_env(kubeconfig, "redis://127.0.0.1:1/0", tmp_path)

    def stashq(*args: str) -> str:
        result = subprocess.run([STASHQ, *args], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def paused() -> object:
        return kube_api.get("stashq.io/v1alpha1", "BackupConfiguration", "nightly",
                            NS)["spec"].get("paused")

    assert stashq("pause", "nightly") == "BackupConfiguration/nightly paused"
    assert paused() is True
    assert stashq("pause", "nightly") == "BackupConfiguration/nightly already paused"
    assert stashq("resume", "nightly") == "BackupConfiguration/nightly resumed"
    assert paused() is False
    missing = subprocess.run([STASHQ, "pause", "nope"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 3
    assert 'BackupConfiguration "nope" not found in namespace "demo"' in missing.stderr
