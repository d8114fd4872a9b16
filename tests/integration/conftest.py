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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import MariaDBServer, Pushgateway, RedisServer, S3Server

STASHQ = str(Path(sys.executable).with_name("stashq"))
#: Seconds a worker gets to say it is ready.
WORKER_READY_S = 60


@dataclass
class Worker:
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([STASHQ, "worker", "-c", "2"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + WORKER_READY_S
        while "ready." not in self.log():
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
        env = dict(self.env)
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
