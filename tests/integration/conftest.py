"""Fixtures for end-to-end tests: a real StashQ (`devstack.stack`) on the session's
servers, resources in a namespace of each test's own, deployments a test may break.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.servers import MariaDBServer, Pushgateway, RedisServer, S3Ports, S3Server, free_port
from devstack.stack import (
    FAST_FAULT_ENV,
    KUBE_LEASE_NAMESPACE,
    Deploy,
    Deployment,
    Stack,
    Worker,
    stashq_env,
)

#: Upload parts of 5 MiB (S3's least): multipart uploads happen in small tests too.
SMALL_PARTS = {"STASHQ_PART_BYTES": str(5 * 2**20)}


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer, s3_server: S3Server, pushgateway: Pushgateway,
          mariadb_server: MariaDBServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stashq")
    env = stashq_env(redis_server.url_for(0), pushgateway, base, **SMALL_PARTS)
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
        env = stashq_env(url, pushgateway, base / "tmp", **SMALL_PARTS, **FAST_FAULT_ENV)
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
