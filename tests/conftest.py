"""Real servers for the whole test session, and a fresh corner of each for every test.

MariaDB, Redis, S3 (SeaweedFS) and the Pushgateway run on loopback with free ports and
their own dirs (`devstack/servers`), each started the first time a test asks for it and
stopped at the end of the session. Every test gets its own database, bucket and Redis
db, so tests never see each other's data. A server that is not installed skips the
tests that need it locally, and fails them when `CI=true`.
"""

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from devstack.servers import (
    BinaryMissing,
    MariaDBServer,
    Pushgateway,
    RedisServer,
    S3Ports,
    S3Server,
    Server,
    free_port,
)
from tests.kube import FakeKubeAPI, write_kubeconfig

#: Redis dbs handed to tests in turn; db 0 is left alone (Celery's default broker db).
TEST_REDIS_DBS = range(1, 16)

ServerT = TypeVar("ServerT", bound=Server)


#: helm and promtool, for the chart tests and for tests/integration/test_metrics.py.
pytest_plugins = ("tests.chart.fixtures",)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def _running(server: ServerT) -> Iterator[ServerT]:
    """Start `server` for the session, skip (fail in CI) if it is not installed, stop it."""
    try:
        server.start()
    except BinaryMissing as e:
        if _in_ci():
            pytest.fail(str(e))
        pytest.skip(str(e))
    except BaseException:
        server.stop()  # half started (Ctrl-C, a timeout): must not outlive the session
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def servers_dir(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """Parent of the servers' data dirs; removed after a green session (kept to debug)."""
    path = tmp_path_factory.mktemp("servers")
    yield path
    if request.session.testsfailed == 0:
        shutil.rmtree(path, ignore_errors=True)


# --- MariaDB -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb_server(servers_dir: Path) -> Iterator[MariaDBServer]:
    yield from _running(MariaDBServer(servers_dir / "mariadb", free_port()))


@pytest.fixture(scope="session")
def binlog_mariadb(servers_dir: Path) -> Iterator[MariaDBServer]:
    """A second MariaDB server, writing a row-format binary log (server id 7): the
    source of point-in-time recovery tests."""
    yield from _running(MariaDBServer(servers_dir / "mariadb-binlog", free_port(), server_id=7))


@pytest.fixture
def database(mariadb_server: MariaDBServer) -> Iterator[str]:
    """The name of a new empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with mariadb_server.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    yield name
    with mariadb_server.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


# --- Redis ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[RedisServer]:
    yield from _running(RedisServer(servers_dir / "redis", free_port()))


@pytest.fixture(scope="session")
def _redis_dbs() -> Iterator[int]:
    return itertools.cycle(TEST_REDIS_DBS)


@pytest.fixture
def redis_url(redis_server: RedisServer, _redis_dbs: Iterator[int]) -> str:
    """The URL of a Redis db of this test's own, emptied first."""
    return _empty_db(redis_server, _redis_dbs)


@pytest.fixture
def broker_url(redis_server: RedisServer, _redis_dbs: Iterator[int]) -> str:
    """Another Redis db of this test's own, for a broker kept apart from the store."""
    return _empty_db(redis_server, _redis_dbs)


def _empty_db(server: RedisServer, dbs: Iterator[int]) -> str:
    url = server.url_for(next(dbs))
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


# --- S3 (SeaweedFS) ------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(servers_dir: Path) -> Iterator[S3Server]:
    yield from _running(S3Server(servers_dir / "s3", S3Ports.free()))


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """The name of a new empty bucket (left in place: the session's server goes away)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_server.make_bucket(name)
    return name


# --- Prometheus Pushgateway ----------------------------------------------------------


@pytest.fixture(scope="session")
def pushgateway(servers_dir: Path) -> Iterator[Pushgateway]:
    yield from _running(Pushgateway(servers_dir / "pushgateway", free_port()))


# --- Kubernetes API (a fake on loopback, tests/kube/server.py) -------------------------


@pytest.fixture
def kube_api() -> Iterator[FakeKubeAPI]:
    """An empty fake API server of this test's own."""
    with FakeKubeAPI() as api:
        yield api


@pytest.fixture
def kubeconfig(kube_api: FakeKubeAPI, tmp_path: Path) -> Path:
    """A kubeconfig file pointing the ``kubernetes`` client at ``kube_api``."""
    return write_kubeconfig(tmp_path / "kubeconfig", kube_api)
