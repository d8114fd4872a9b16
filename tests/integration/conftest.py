"""A real StashQ deployment for end-to-end tests: a `stashq worker` process on the test
Redis, the `stashq` CLI as a subprocess, resources in a namespace of each test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.servers import MariaDBServer, Pushgateway, RedisServer, S3Ports, S3Server, free_port
from workers.state import open_store
from workers.state.base import ResourceStore
from workers.state.redis import RedisStore
from workflows.resources import RestoreSession
from workflows.settings import Settings

STASHQ = str(Path(sys.executable).with_name("stashq"))
#: Seconds a worker gets to say it is ready.
WORKER_READY_S = 60


@dataclass
class Worker:
    """A ``stashq worker`` process (or, with other ``args``, another long-running command)."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)
    args: tuple[str, ...] = ("worker", "-c", "2")
    ready: str | None = "ready."  #: the log line that says it started; None: do not wait

    def start(self) -> None:
        """Start and wait for this start's "ready." (the log is appended to: a restarted
        worker must not be taken for ready on its predecessor's line)."""
        before = len(self.log())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([STASHQ, *self.args], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + WORKER_READY_S
        while self.ready is not None and self.ready not in self.log()[before:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Stack:
    """Everything a test needs to act as a user of a running StashQ."""

    env: dict[str, str]
    worker: Worker
    mariadb: MariaDBServer
    s3: S3Server
    pushgateway: Pushgateway
    redis_url: str

    def cli(self, *args: str, namespace: str | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args, namespace=namespace, check=check, timeout=timeout)


def wait_restore(stack: Stack, namespace: str, name: str, timeout_s: float) -> dict[str, Any]:
    """The final status of RestoreSession ``name``, read from the store; fails the test
    with the worker's log if it is not final within ``timeout_s``."""
    store = RedisStore.from_url(stack.redis_url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = store.get(RestoreSession, name, namespace).status
        if status.get("phase") in ("Succeeded", "Failed"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"RestoreSession {name} not final: {status}\n"
                         f"{stack.worker.log()[-3000:]}")


def run_cli(env: dict[str, str], *args: str, namespace: str | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``stashq ARGS`` as a user would, with ``env`` (and ``namespace``, if given)."""
    env = dict(env)
    if namespace:
        env["STASHQ_NAMESPACE"] = namespace
    result = subprocess.run([STASHQ, *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"stashq {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, s3_server: S3Server, pushgateway: Pushgateway,
          mariadb_server: MariaDBServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stashq")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    env |= {"STASHQ_BROKER_URL": redis_server.url_for(0),
            "STASHQ_REDIS_URL": redis_server.url_for(0),
            "STASHQ_PUSHGATEWAY_URL": pushgateway.url,
            "STASHQ_DB_WAIT_S": "2",
            "STASHQ_PART_BYTES": str(5 * 2**20),
            "TMPDIR": str(base)}
    worker = Worker(env, base / "worker.log")
    worker.start()
    try:
        yield Stack(env, worker, mariadb_server, s3_server, pushgateway, redis_server.url_for(0))
    finally:
        worker.stop()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# --- deployments of a test's own, for fault tests -------------------------------------

#: Worker settings for fault tests: everything that waits takes seconds, not minutes.
FAST_FAULT_ENV = {
    "STASHQ_HEARTBEAT_INTERVAL_S": "0.5",
    "STASHQ_HEARTBEAT_TIMEOUT_S": "3",
    "STASHQ_STALE_SWEEP_INTERVAL_S": "0.5",
    "STASHQ_LOCK_LEASE_S": "3",
    "STASHQ_RETRY_BASE_S": "1",
    "STASHQ_RETRY_MAX_DELAY_S": "2",
    "STASHQ_S3_MAX_ATTEMPTS": "1",
}


@dataclass
class Deployment:
    """A StashQ of one test's own: a Redis db as broker and store (or, on Kubernetes,
    the fake API server as store and a ``stashq watch`` queueing its sessions), workers
    that the test starts, kills and replaces at will, and the servers it was given (the
    session's, or the test's own when it means to stop them)."""

    env: dict[str, str]
    tmp_path: Path
    mariadb: MariaDBServer
    s3: S3Server
    redis_url: str
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2, **env: str) -> Worker:
        """A new ``stashq worker`` with ``env`` on top (``STASHQ_PAUSE_AT="..."``), ready."""
        worker = Worker(self.env | env, self.tmp_path / f"worker-{len(self.workers)}.log",
                        args=("worker", "-c", str(concurrency)))
        self.workers.append(worker)
        worker.start()
        return worker

    def store(self) -> ResourceStore:
        """The state store the deployment's processes use, as a user's script would."""
        return open_store(Settings.from_env(self.env))

    def cli(self, *args: str, namespace: str | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args, namespace=namespace, check=check, timeout=timeout)

    def logs(self) -> str:
        return "\n".join(w.log() for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGKILL)  # the test is over: nothing to finish gracefully


Deploy = Callable[..., Deployment]
#: Where a Kubernetes deployment's locks live (the chart: the release's namespace).
KUBE_LEASE_NAMESPACE = "stashq-system"


@pytest.fixture
def deploy(redis_url: str, s3_server: S3Server, mariadb_server: MariaDBServer,
           pushgateway: Pushgateway, tmp_path: Path) -> Iterator[Deploy]:
    """``deploy(mariadb=..., s3=..., redis=..., kubeconfig=...)``: a Deployment on the
    session's servers, or on the ones given (with a kubeconfig: the store on that API
    server); its workers are killed at the end of the test."""
    made: list[Deployment] = []

    def make(*, mariadb: MariaDBServer | None = None, s3: S3Server | None = None,
             redis: str | None = None, kubeconfig: Path | None = None) -> Deployment:
        url = redis or redis_url
        base = tmp_path / f"deployment-{len(made)}"
        (base / "tmp").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
        env |= {"STASHQ_BROKER_URL": url, "STASHQ_REDIS_URL": url,
                "STASHQ_PUSHGATEWAY_URL": pushgateway.url, "STASHQ_DB_WAIT_S": "2",
                "STASHQ_PART_BYTES": str(5 * 2**20), "TMPDIR": str(base / "tmp"),
                **FAST_FAULT_ENV}
        if kubeconfig is not None:  # the store on the API server; Redis only as broker
            env |= {"STASHQ_STORE": "kubernetes", "STASHQ_KUBECONFIG": str(kubeconfig),
                    "STASHQ_LEASE_NAMESPACE": KUBE_LEASE_NAMESPACE}
        made.append(Deployment(env, base, mariadb or mariadb_server, s3 or s3_server, url))
        if kubeconfig is not None:
            watcher = Worker(env, base / "watch.log", args=("watch",), ready=None)
            made[-1].workers.append(watcher)
            watcher.start()
        return made[-1]

    yield make
    for deployment in made:
        deployment.stop()


@pytest.fixture
def own_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """An S3 server of this test's own, to stop and start again."""
    server = S3Server(tmp_path_factory.mktemp("s3"), S3Ports.free())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A persistent Redis of this test's own, to restart (as production's keeps its data)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port(), persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def source_db(binlog_mariadb: MariaDBServer) -> Iterator[str]:
    """A database of this test's own on the binlog server, with a table ``t``."""
    name = f"pitr_{uuid.uuid4().hex[:12]}"
    with binlog_mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
        cursor.execute(f"CREATE TABLE `{name}`.t (id INT PRIMARY KEY, at BIGINT NOT NULL)")
        cursor.execute(f"INSERT INTO `{name}`.t VALUES (1, UNIX_TIMESTAMP())")
    yield name
    with binlog_mariadb.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def own_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """A MariaDB server of this test's own, to restart."""
    server = MariaDBServer(tmp_path_factory.mktemp("db"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()
