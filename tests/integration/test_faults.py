"""The failures a backup tool meets, end to end with real processes: workers killed with
``kill -9`` at each point of a backup, S3 stopped mid-upload, Redis restarted, the
database restarted mid-dump, two backups of one target at once and a prune during a
backup, and a password searched for everywhere it must never be.

What a user must see each time: the session ends Succeeded with exactly one snapshot,
or Failed with a reason that names the culprit; no half snapshot is ever listed; no
multipart upload stays open; nothing stays Running for ever.

Each test runs a deployment of its own (``deploy``: its Redis db as broker and store,
workers it kills and replaces) on the session's servers, or on servers of its own when
it stops them. Heartbeats, sweeps, lock leases and retry backoff take seconds here
(``FAST_FAULT_ENV``), and every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pymysql
import pytest
import redis

from devstack.resources import appbinding, secret, standard_setup
from devstack.servers import MariaDBServer, RedisServer, S3Server
from devstack.stack import STASHQ, Deploy, Deployment, Worker, created
from tests.integration.test_failures import dump_pids
from workers.app import create_app
from workers.state.redis import RedisStore
from workers.steps.session import DATA_QUEUE
from workers.sweeper import StaleSweeper
from workflows.phases import FINAL_PHASES
from workflows.resources import BackupSession
from workflows.settings import Settings

T = TypeVar("T")

#: Seconds a whole backup story may take before a test gives up waiting.
STORY_S = 60.0
#: For stories that are not about silence: a loaded machine may delay a heartbeat past
#: the fast timeout, and a needless (harmless) re-queue would blur what they check.
CALM = {"STASHQ_HEARTBEAT_TIMEOUT_S": "60"}
#: Rows of ``a_big`` (2 KiB of hex each) for a dump that has a part uploaded before it
#: reaches ``z_locked`` (zstd's worker threads hold many MiB before their first output,
#: and hex of random bytes only halves).
BIG_ROWS = 20_000


# --- what a user looks at --------------------------------------------------------------


def eventually(check: Callable[[], T], what: str, deployment: Deployment,
               timeout_s: float = STORY_S) -> T:
    """``check()`` once it is truthy; fail with the workers' logs after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s:.0f}s waiting for {what}; worker logs:\n"
                        f"{deployment.logs()[-6000:]}")
        time.sleep(0.1)
    return value


def status(d: Deployment, namespace: str, name: str) -> dict[str, Any]:
    return d.store().get(BackupSession, name, namespace).status


def final_status(d: Deployment, namespace: str, name: str) -> dict[str, Any]:
    return eventually(lambda: (s := status(d, namespace, name)).get("phase") in FINAL_PHASES
                      and s, f"{name} to finish", d)


def keys(s3: S3Server, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def manifests(s3: S3Server, bucket: str) -> list[str]:
    return [k for k in keys(s3, bucket) if "/snapshots/" in k]


def open_uploads(s3: S3Server, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = s3.client().list_multipart_uploads(
        Bucket=bucket).get("Uploads", [])
    return uploads


def snapshot_ids(d: Deployment, namespace: str) -> set[str]:
    listing = d.cli("snapshots", "repo", namespace=namespace, check=True).stdout
    return {line.split()[0] for line in listing.splitlines()[1:]}


# --- what a test does to the world ---------------------------------------------------


def fill(server: MariaDBServer, database: str, *, big_rows: int = 0) -> None:
    """``a_big`` (about 2 KiB of hex per row, barely compressible), then ``z_locked``,
    which ``locked`` locks to hold a dump at that table."""
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(f"USE `{database}`")
        cur.execute("CREATE TABLE a_big (id INT PRIMARY KEY AUTO_INCREMENT, v TEXT)")
        if big_rows:
            cur.execute(f"INSERT INTO a_big (v) SELECT HEX(RANDOM_BYTES(1024)) "
                        f"FROM seq_1_to_{big_rows}")
        cur.execute("CREATE TABLE z_locked (id INT PRIMARY KEY)")
        cur.execute("INSERT INTO z_locked VALUES (1)")


@contextlib.contextmanager
def locked(server: MariaDBServer, database: str) -> Iterator[None]:
    """A dump of ``database`` stalls at ``z_locked`` inside this block."""
    conn = server.connect()
    try:
        conn.cursor().execute(f"LOCK TABLES `{database}`.`z_locked` WRITE")
        yield
    finally:
        with contextlib.suppress(pymysql.MySQLError):  # the server may be gone by now
            conn.cursor().execute("UNLOCK TABLES")
            conn.close()


def apply(d: Deployment, namespace: str, tmp_path: Path, bucket: str, database: str,
          *extra: str) -> None:
    path = standard_setup(tmp_path / f"setup-{uuid.uuid4().hex[:6]}.yaml", d.s3, d.mariadb,
                          bucket, database)
    path.write_text("---\n".join([path.read_text(), *extra]))
    d.cli("apply", "-f", str(path), namespace=namespace, check=True)


def trigger(d: Deployment, namespace: str, config: str = "nightly") -> str:
    return created(d.cli("backup", config, namespace=namespace, check=True).stdout)


def configuration(name: str, target: str, database: str, *, extra_params: str = "",
                  retention: str = "") -> str:
    return f"""apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata: {{name: {name}}}
spec:
  schedule: "0 3 * * *"
  repository: {{name: repo}}
  target:
    ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: {target}}}
  task:
    params:
      - {{name: databases, value: "{database}"}}
{extra_params}{retention}"""


def redeliver_unacked(redis_url: str) -> list[str]:
    """Do what Redis does once the visibility timeout has passed: put every message a
    worker took and never acknowledged back on its queue. Returns their task names."""
    client = redis.Redis.from_url(redis_url)
    names = []
    for tag, raw in client.hgetall("unacked").items():
        message, _exchange, routing_key = json.loads(raw)
        message["headers"]["redelivered"] = True
        client.rpush(routing_key, json.dumps(message))
        client.hdel("unacked", tag)
        client.zrem("unacked_index", tag)
        names.append(message["headers"]["task"])
    return names


# --- kill -9 ---------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["before_upload", "mid_upload", "before_manifest"])
def test_a_worker_killed_anywhere_in_a_backup_leaves_one_snapshot_after_a_restart(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path,
        point: str) -> None:
    d = deploy()
    fill(d.mariadb, database, big_rows=BIG_ROWS if point == "mid_upload" else 0)
    apply(d, namespace, tmp_path, bucket, database)
    pause = {} if point == "mid_upload" else {"STASHQ_PAUSE_AT": f"{point}:600"}
    doomed = d.start_worker(**pause)
    with locked(d.mariadb, database) if point == "mid_upload" else contextlib.nullcontext():
        name = trigger(d, namespace)
        if point == "mid_upload":  # a 5 MiB part is up, the dump waits at z_locked
            eventually(lambda: open_uploads(d.s3, bucket), "a part to be uploaded", d)
        else:
            eventually(lambda: f"test pause at {point}" in doomed.log(), f"pause at {point}", d)
        doomed.stop(signal.SIGKILL)  # the whole process group: worker, pool, dump client

    # The worker is gone: the session still says Running, and nothing half is listed.
    assert status(d, namespace, name)["phase"] == "Running"
    # Its option file, with the database password, died with it (it lived in memory).
    assert not [p for p in (d.tmp_path / "tmp").rglob("*") if p.name.endswith(".cnf")]
    assert manifests(d.s3, bucket) == [] and name not in snapshot_ids(d, namespace)
    if point == "before_manifest":  # the data is complete, but without its manifest
        assert [k for k in keys(d.s3, bucket) if "/packs/" in k]
    if point == "mid_upload":
        assert open_uploads(d.s3, bucket)

    d.start_worker()  # its sweeper finds the session silent and queues it again
    final = final_status(d, namespace, name)
    assert final["phase"] == "Succeeded", final
    assert final["requeued"] == 1
    assert final["lastRequeue"]["reason"].startswith(
        "worker stopped reporting during stashq.dump_upload at ")
    assert any(e.startswith(f"BackupSession/{namespace}/{name} (backup, exclusive")
               for e in final["expiredLocks"]), final  # the dead worker's lock, reported
    assert manifests(d.s3, bucket) == [f"backups/demo/snapshots/{name}.json"]
    assert open_uploads(d.s3, bucket) == []
    assert snapshot_ids(d, namespace) == {name}

    # Hours later Redis hands the dead worker's message out again: nothing changes.
    manifest = d.s3.client().head_object(Bucket=bucket, Key=manifests(d.s3, bucket)[0])
    assert redeliver_unacked(d.redis_url) == ["stashq.dump_upload"]
    eventually(lambda: "step stashq.dump_upload: session already Succeeded" in d.logs(),
               "the redelivered step to stop", d)
    again = d.s3.client().head_object(Bucket=bucket, Key=manifests(d.s3, bucket)[0])
    assert again["ETag"] == manifest["ETag"] and len(manifests(d.s3, bucket)) == 1
    assert status(d, namespace, name)["completionTime"] == final["completionTime"]


def test_a_session_nobody_finishes_is_queued_again_then_failed_with_the_reason(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    d = deploy()
    apply(d, namespace, tmp_path, bucket, database)
    store = RedisStore.from_url(d.redis_url)
    name = f"nightly-{int(time.time()) - 3600}"  # its worker died an hour ago, mid-dump
    store.create(BackupSession.model_validate({
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"invoker": {"name": "nightly"}},
        "status": {"phase": "Running", "startTime": "2025-01-01T03:00:00Z",
                   "heartbeatAt": "2025-01-01T03:00:05Z",
                   "heartbeatStep": "stashq.dump_upload"}}))
    settings = Settings.from_env(d.env | {"STASHQ_STALE_REQUEUE_LIMIT": "1"})
    sweepers = [StaleSweeper(create_app(settings), store, settings) for _ in range(2)]

    done = sweepers[0].sweep()  # queued again: the chain's first step is on the queue
    assert [(ref.name, verdict.action) for ref, verdict in done] == [(name, "requeue")]
    assert sweepers[1].sweep() == []  # a second sweeper finds it freshly queued
    queued = redis.Redis.from_url(d.redis_url).lrange("stashq.control", 0, -1)
    assert [json.loads(m)["headers"]["task"] for m in queued] == ["stashq.precheck"]
    assert status(d, namespace, name)["requeued"] == 1

    sweepers[0].clock = lambda: time.time() + 10  # and nobody took it up
    done = sweepers[0].sweep()
    assert [(ref.name, verdict.action) for ref, verdict in done] == [(name, "fail")]
    failed = status(d, namespace, name)
    assert failed["phase"] == "Failed" and failed["failedStep"] == "stashq.dump_upload"
    assert failed["reason"].startswith(
        "worker stopped reporting during stashq.dump_upload at 2025-01-01T03:00:05Z; "
        "queued again at ")
    assert failed["reason"].endswith(", no worker has reported since; re-queued 1 time(s)")

    # The queued chain and the dead worker's own message arrive late: both stop at once.
    create_app(settings).send_task("stashq.dump_upload", args=(f"BackupSession/{namespace}/"
                                                                f"{name}", {}), queue=DATA_QUEUE)
    d.start_worker(**CALM)
    for step in ("precheck", "dump_upload"):
        eventually(lambda s=step: f"step stashq.{s}: session already Failed" in d.logs(),
                   f"the late {step} to stop", d)
    assert status(d, namespace, name) == failed
    assert keys(d.s3, bucket) == []


def test_stashq_beat_sweeps_for_stale_sessions_too(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    d = deploy()
    apply(d, namespace, tmp_path, bucket, database)
    name = f"nightly-{int(time.time()) - 3600}"
    RedisStore.from_url(d.redis_url).create(BackupSession.model_validate({
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"invoker": {"name": "nightly"}},
        "status": {"phase": "Running", "heartbeatAt": "2025-01-01T03:00:05Z",
                   "heartbeatStep": "stashq.precheck"}}))
    log = tmp_path / "beat.log"
    beat = subprocess.Popen([STASHQ, "beat", "-n", namespace], env=d.env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        requeued = eventually(lambda: status(d, namespace, name).get("lastRequeue"),
                              "beat to queue the session again", d)
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=20)
    assert requeued["reason"].startswith("worker stopped reporting during stashq.precheck")
    queued = redis.Redis.from_url(d.redis_url).lrange("stashq.control", 0, -1)
    assert [json.loads(m)["headers"]["task"] for m in queued] == ["stashq.precheck"]


def paused_before_manifest(deploy: Deploy, namespace: str, database: str, bucket: str,
                           tmp_path: Path) -> tuple[Deployment, str]:
    """A deployment whose backup of "nightly" has uploaded its dump and is paused before
    its manifest; and that session's name."""
    d = deploy()
    fill(d.mariadb, database)
    apply(d, namespace, tmp_path, bucket, database)
    d.start_worker(STASHQ_PAUSE_AT="before_manifest:3")
    name = trigger(d, namespace)
    eventually(lambda: "test pause at before_manifest" in d.logs(), "the pause", d)
    return d, name


def test_deleting_the_configuration_mid_backup_deletes_the_session_and_the_worker_stops(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    """As Kubernetes' garbage collector does: ``stashq delete bc`` takes the sessions the
    configuration invoked with it, and the running one's worker stops its chain when its
    running step ends, writing nothing back (it is not left Running)."""
    d, name = paused_before_manifest(deploy, namespace, database, bucket, tmp_path)
    deleted = d.cli("delete", "bc", "nightly", namespace=namespace, check=True)
    assert deleted.stdout == "BackupConfiguration/nightly deleted\n"
    assert d.store().list(BackupSession, namespace) == []  # collected with it
    eventually(lambda: f"BackupSession/{namespace}/{name} was deleted while it ran"
               in d.logs(), "the worker to stop the chain", d)
    log = d.logs()
    assert "Traceback" not in log
    assert "chain stopped" in log and "step stashq.update_status done" not in log
    assert d.store().list(BackupSession, namespace) == []  # nothing wrote the session back
    # the step was past its upload: its snapshot stays, as any snapshot, for retention
    assert [k.rsplit("/", 1)[1] for k in manifests(d.s3, bucket)] == [f"{name}.json"]
    assert open_uploads(d.s3, bucket) == []
    assert name not in d.cli("sessions", namespace=namespace, check=True).stdout


def test_an_orphaning_delete_mid_backup_keeps_the_session_which_fails_naming_why(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    """``--cascade=orphan`` keeps the sessions: the running one's next step finds the
    configuration gone and ends it Failed, naming it; ``stashq sessions`` still shows it."""
    d, name = paused_before_manifest(deploy, namespace, database, bucket, tmp_path)
    d.cli("delete", "backupconfigurations", "nightly", "--cascade=orphan", namespace=namespace,
          check=True)
    final = final_status(d, namespace, name)
    reason = (f'BackupConfiguration "nightly" (named by BackupSession "{name}" '
              f'spec.invoker.name) not found in namespace "{namespace}"')
    assert final["phase"] == "Failed" and final["reason"] == reason, final
    listed = d.cli("sessions", namespace=namespace, check=True).stdout
    assert name in listed and "Failed" in listed


# --- S3 --------------------------------------------------------------------------------


def start_big_backup(d: Deployment, namespace: str, database: str, bucket: str,
                     tmp_path: Path, *extra: str) -> tuple[str, contextlib.ExitStack]:
    """A backup holding an open multipart upload while its dump waits at ``z_locked``;
    closing the returned stack lets the dump go on."""
    fill(d.mariadb, database, big_rows=BIG_ROWS)
    apply(d, namespace, tmp_path, bucket, database, *extra)
    stack = contextlib.ExitStack()
    stack.enter_context(locked(d.mariadb, database))
    name = trigger(d, namespace)
    eventually(lambda: open_uploads(d.s3, bucket), "a part to be uploaded", d)
    return name, stack


def test_s3_stopped_mid_upload_is_retried_and_the_backup_succeeds_when_it_returns(
        deploy: Deploy, own_s3: S3Server, namespace: str, database: str,
        tmp_path: Path) -> None:
    d = deploy(s3=own_s3)
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    own_s3.make_bucket(bucket)
    d.start_worker(**CALM, STASHQ_RETRY_LIMIT="6")
    name, dump_waits = start_big_backup(d, namespace, database, bucket, tmp_path)
    own_s3.kill()
    dump_waits.close()  # the dump goes on, into an S3 that is not there

    retry = eventually(lambda: status(d, namespace, name).get("retry"), "a retry", d)
    assert retry["step"] == "stashq.dump_upload" and retry["of"] == 6
    assert f"S3 at {own_s3.endpoint} is unreachable" in retry["reason"]
    own_s3.start()

    final = final_status(d, namespace, name)
    assert final["phase"] == "Succeeded", final
    assert manifests(own_s3, bucket) == [f"backups/demo/snapshots/{name}.json"]
    assert open_uploads(own_s3, bucket) == []  # the retry aborted the dead upload first
    check = d.cli("check", "repo", "--read-data", namespace=namespace)
    assert check.returncode == 0, check.stdout


def test_s3_gone_for_longer_than_the_retries_fails_naming_the_endpoint(
        deploy: Deploy, own_s3: S3Server, namespace: str, database: str,
        tmp_path: Path) -> None:
    d = deploy(s3=own_s3)
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    own_s3.make_bucket(bucket)
    d.start_worker(**CALM, STASHQ_RETRY_LIMIT="2")
    prune = "  retentionPolicy: {name: keep-all, keepLast: 100, prune: true}\n"
    name, dump_waits = start_big_backup(d, namespace, database, bucket, tmp_path)
    own_s3.kill()
    dump_waits.close()

    final = final_status(d, namespace, name)
    assert final["phase"] == "Failed" and final["failedStep"] == "stashq.dump_upload"
    assert f"S3 at {own_s3.endpoint} is unreachable" in final["reason"]
    assert final["reason"].endswith("(gave up after 2 retries)")

    # S3 returns: nothing is listed, and the upload the failed step could not abort is
    # aborted by the next prune (under the exclusive lock no backup is writing).
    own_s3.start()
    assert manifests(own_s3, bucket) == [] and len(open_uploads(own_s3, bucket)) == 1
    path = tmp_path / "prune.yaml"
    path.write_text(configuration("nightly", "db", database, retention=prune))
    d.cli("apply", "-f", str(path), namespace=namespace, check=True)
    with d.mariadb.connect() as conn:
        conn.cursor().execute(f"TRUNCATE `{database}`.a_big")  # a quick one this time
    later = final_status(d, namespace, trigger(d, namespace))
    assert later["phase"] == "Succeeded", later
    assert later["retention"]["abortedUploads"] == 1
    assert open_uploads(own_s3, bucket) == []


# --- Redis, the database -------------------------------------------------------------


def test_redis_restarted_during_a_backup_loses_no_session_and_leaves_none_running(
        deploy: Deploy, own_redis: RedisServer, namespace: str, database: str, bucket: str,
        tmp_path: Path) -> None:
    d = deploy(redis=own_redis.url_for(0))
    fill(d.mariadb, database)
    apply(d, namespace, tmp_path, bucket, database)
    worker = d.start_worker()
    with locked(d.mariadb, database):
        name = trigger(d, namespace)
        eventually(lambda: dump_pids(database), "the dump to start", d)
        own_redis.stop()
        own_redis.start()
        assert status(d, namespace, name)["phase"] == "Running"  # kept across the restart
    # Celery 5.7's consumer may stop for good when the broker drops a connection with an
    # unacknowledged message on it ("Unrecoverable error: AttributeError ... hostname"
    # while restoring it), and exits. Its supervisor (the chart's Deployment) starts it
    # again; that, heartbeats and the sweeper must be enough.
    outcome = eventually(lambda: "exited" if worker.proc and worker.proc.poll() is not None
                         else "reconnected" if worker.log().count("Connected to redis") > 1
                         else "", "the worker to reconnect or exit", d)
    if outcome == "exited":
        d.start_worker()

    final = final_status(d, namespace, name)
    assert final["phase"] == "Succeeded", final
    assert manifests(d.s3, bucket) == [f"backups/demo/snapshots/{name}.json"]
    after = trigger(d, namespace)  # and the worker goes on working
    assert final_status(d, namespace, after)["phase"] == "Succeeded"
    store = RedisStore.from_url(d.redis_url)
    assert {s.status["phase"] for s in store.list(BackupSession, namespace)} == {"Succeeded"}


def test_database_restarted_mid_dump_fails_with_the_clients_error_and_writes_nothing(
        deploy: Deploy, own_mariadb: MariaDBServer, namespace: str, bucket: str,
        tmp_path: Path) -> None:
    d = deploy(mariadb=own_mariadb)
    database = "shop"
    with own_mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE DATABASE `{database}`")
    d.start_worker(**CALM)
    name, dump_waits = start_big_backup(d, namespace, database, bucket, tmp_path)
    with dump_waits:
        own_mariadb.stop()  # a restart: shutdown (connections killed), then up again
    own_mariadb.start()

    final = final_status(d, namespace, name)
    assert final["phase"] == "Failed" and final["failedStep"] == "stashq.dump_upload"
    assert final["reason"].startswith("mariadb-dump exited with code"), final["reason"]
    assert "retry" not in final  # a dump cut short is not retried: the data moved on
    # No snapshot, no index: a pack completed before the failure is garbage for prune.
    assert [k for k in keys(d.s3, bucket) if "/index/" in k or "/snapshots/" in k] == []
    assert open_uploads(d.s3, bucket) == []


# --- locks -----------------------------------------------------------------------------


@pytest.fixture(params=["redis", "kubernetes"])
def deploy_on(request: pytest.FixtureRequest, deploy: Deploy) -> Deploy:
    """``deploy`` with the store (and so the locks) in Redis, or on the fake API server."""
    if request.param == "redis":
        return deploy
    kubeconfig = request.getfixturevalue("kubeconfig")
    return lambda **kwargs: deploy(kubeconfig=kubeconfig, **kwargs)


def two_workers(d: Deployment) -> tuple[Worker, Worker]:
    """Two workers of one step at a time each: while the first is busy with a backup
    the next session goes to the other, so only the store's locks stand between them."""
    return d.start_worker(1, **CALM), d.start_worker(1, **CALM)


def logged(worker: Worker, name: str, text: str) -> bool:
    """Did ``worker`` log ``text`` while working on session ``name``?"""
    return any(f"[{name}] " in line and text in line for line in worker.log().splitlines())


def dumping(worker: Worker, name: str) -> bool:
    return logged(worker, name, "dumping")


def test_two_backups_of_one_target_run_one_after_the_other(
        deploy_on: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    d = deploy_on()
    fill(d.mariadb, database)
    apply(d, namespace, tmp_path, bucket, database)
    workers = two_workers(d)
    with locked(d.mariadb, database):
        first = trigger(d, namespace)
        eventually(lambda: dump_pids(database), "the first dump", d)
        [busy] = [w for w in workers if dumping(w, first)]
        second = trigger(d, namespace)
        waiting = eventually(lambda: status(d, namespace, second).get("waitingFor"),
                             "the second backup to wait", d)
        assert waiting.startswith(f"target:AppBinding/{namespace}/db, locked by "
                                  f"BackupSession/{namespace}/{first} (backup, exclusive")
        assert len(dump_pids(database)) == 1
        [spare] = [w for w in workers if w is not busy]
        assert logged(spare, second, f"waiting for target:AppBinding/{namespace}/db, locked by")
    one, two = final_status(d, namespace, first), final_status(d, namespace, second)
    assert one["phase"] == two["phase"] == "Succeeded"
    assert "waitingFor" not in two
    assert snapshot_ids(d, namespace) == {first, second}
    listed = json.loads(d.s3.client().get_object(
        Bucket=bucket, Key=f"backups/demo/snapshots/{first}.json")["Body"].read())
    then = json.loads(d.s3.client().get_object(
        Bucket=bucket, Key=f"backups/demo/snapshots/{second}.json")["Body"].read())
    started, finished = (datetime.fromisoformat(then["startedAt"].replace("Z", "+00:00")),
                         datetime.fromisoformat(listed["finishedAt"].replace("Z", "+00:00")))
    assert started >= finished, (listed, then)


def test_a_prune_waits_for_the_backups_running_in_its_repository(
        deploy_on: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    d = deploy_on()
    other = f"{database}_other"
    with d.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE DATABASE `{other}`")
    fill(d.mariadb, database)
    keep_one = ("  retentionPolicy: {name: keep-1, keepLast: 1, prune: true}\n")
    wait = '      - {name: lockWaitSeconds, value: "60"}\n'
    apply(d, namespace, tmp_path, bucket, database, appbinding("db2", d.mariadb, "db-auth"),
          configuration("weekly", "db2", other, extra_params=wait, retention=keep_one))
    workers = two_workers(d)
    old = trigger(d, namespace, "weekly")
    assert final_status(d, namespace, old)["phase"] == "Succeeded"
    try:
        with locked(d.mariadb, database):
            nightly = trigger(d, namespace)
            eventually(lambda: dump_pids(database), "the nightly dump", d)
            [busy] = [w for w in workers if dumping(w, nightly)]
            weekly = trigger(d, namespace, "weekly")
            waiting = eventually(lambda: status(d, namespace, weekly).get("waitingFor"),
                                 "the prune to wait", d)
            assert status(d, namespace, weekly)["heartbeatStep"] == "stashq.retention"
            assert f"locked by BackupSession/{namespace}/{nightly} (backup, shared" in waiting
            assert old in snapshot_ids(d, namespace)  # nothing forgotten while it waits
            [spare] = [w for w in workers if w is not busy]
            assert logged(spare, weekly, "waiting for repository:")
    finally:
        with d.mariadb.connect() as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS `{other}`")
    assert final_status(d, namespace, nightly)["phase"] == "Succeeded"
    pruned = final_status(d, namespace, weekly)
    assert pruned["phase"] == "Succeeded" and pruned["retention"]["forgotten"] == [old]
    assert snapshot_ids(d, namespace) == {nightly, weekly}
    check = d.cli("check", "repo", "--read-data", namespace=namespace)
    assert check.returncode == 0 and "2 snapshot(s)" in check.stdout, check.stdout


# --- secrets ---------------------------------------------------------------------------

#: Distinctive enough never to appear by chance; plain, so no escaping hides it.
PASSWORD = "Pw-" + uuid.uuid4().hex


def redis_text(url: str, *, skip_prefix: str) -> str:
    """Every value of every key in the db (strings, lists, hashes, sets, streams), as
    text."""
    client = redis.Redis.from_url(url)
    parts = []
    for key in client.scan_iter():
        if key.decode().startswith(skip_prefix):
            continue
        kind = client.type(key).decode()
        value: Any = {"string": client.get, "list": lambda k: client.lrange(k, 0, -1),
                      "hash": client.hgetall, "set": client.smembers,
                      "zset": lambda k: client.zrange(k, 0, -1),
                      "stream": client.xrange}[kind](key)
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def test_passwords_appear_in_no_argv_log_status_metric_or_error(
        deploy: Deploy, pushgateway: Any, namespace: str, database: str, bucket: str,
        tmp_path: Path) -> None:
    d = deploy()
    user = f"u{uuid.uuid4().hex[:8]}"
    with d.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, PASSWORD))
        cur.execute(f"GRANT ALL ON *.* TO `{user}`@'%'")
    try:
        fill(d.mariadb, database)
        bad_args = '      - {name: args, value: "--no-such-option"}\n'
        apply(d, namespace, tmp_path, bucket, database,
              secret("db-auth", username=user, password=PASSWORD),
              configuration("broken", "db", database, extra_params=bad_args))
        worker = d.start_worker(**CALM)
        with locked(d.mariadb, database):  # the dump client waits: read what it was given
            good = trigger(d, namespace)
            pid = eventually(lambda: dump_pids(database), "the dump", d)[0]
            seen = {"argv": Path(f"/proc/{pid}/cmdline").read_bytes(),
                    "environment": Path(f"/proc/{pid}/environ").read_bytes()}
        assert b"--defaults-file=" in seen["argv"]  # the password is in there, 0600
        assert final_status(d, namespace, good)["phase"] == "Succeeded"
        failing = d.cli("backup", "broken", "--wait", namespace=namespace)
        assert failing.returncode == 8 and "--no-such-option" in failing.stderr
    finally:
        with d.mariadb.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP USER `{user}`@'%'")

    with urllib.request.urlopen(f"{pushgateway.url}/metrics") as response:
        metrics = response.read().decode()
    assert 'invoker_name="broken"' in metrics  # the failed session's metrics are there
    worker_proc = Path(f"/proc/{worker.proc.pid}") if worker.proc else None
    places = {
        "dump client argv": seen["argv"].decode(errors="replace"),
        "dump client environment": seen["environment"].decode(errors="replace"),
        "worker argv and environment": "" if worker_proc is None else (
            (worker_proc / "cmdline").read_bytes() + (worker_proc / "environ").read_bytes()
        ).decode(errors="replace"),
        "worker log": d.logs(),
        "CLI output": failing.stdout + failing.stderr,
        "Redis (statuses, results, exceptions, messages)": redis_text(
            d.redis_url, skip_prefix="stashq:res:Secret:"),
        "Pushgateway metrics": metrics,
        "temporary files": "".join(p.read_text(errors="replace")
                                   for p in (d.tmp_path / "tmp").rglob("*") if p.is_file()),
    }
    assert PASSWORD in redis_text(d.redis_url, skip_prefix="-")  # the search can find it
    assert [where for where, text in places.items() if PASSWORD in text] == []
