"""A real StashQ to drive from outside, shared by the tests and the benchmarks: a
``stashq worker`` process, the ``stashq`` CLI as a subprocess, deployments of a test's
own with workers it starts and kills, and the environment they all run with.

Nothing here imports pytest: the benchmarks use it without the test suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.servers import MariaDBServer, Pushgateway, S3Server
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


def stashq_env(redis_url: str, pushgateway: Pushgateway, tmpdir: Path,
               **extra: str) -> dict[str, str]:
    """The environment of a StashQ on these servers: this process's own minus any
    ``STASHQ_*`` (a developer's shell must not leak in), Redis as broker and store, the
    Pushgateway, short database waits, ``tmpdir`` as TMPDIR; product defaults for the
    rest but ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    return env | {"STASHQ_BROKER_URL": redis_url, "STASHQ_REDIS_URL": redis_url,
                  "STASHQ_PUSHGATEWAY_URL": pushgateway.url, "STASHQ_DB_WAIT_S": "2",
                  "TMPDIR": str(tmpdir), **extra}


SESSION_LINE = re.compile(r"(BackupSession|RestoreSession)/(\S+) created")


def created(output: str) -> str:
    """The session name in ``stashq backup|restore``'s "Kind/name created" line."""
    match = SESSION_LINE.search(output)
    assert match, output
    return match.group(2)


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


