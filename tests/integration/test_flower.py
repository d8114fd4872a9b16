"""Watching the queue in Flower: an operator starts ``stashq flower`` on the broker, runs
a backup, and finds every step of its chain in Flower's API with its final state.

Flower only knows the task events sent while it runs, so it starts first, and the test
waits until it hears the worker's heartbeats (the worker sends events: ``-E``). Basic
auth comes from ``FLOWER_BASIC_AUTH``, as the chart sets it from a Secret.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.resources import standard_setup
from devstack.servers import free_port
from devstack.stack import STASHQ, Stack

#: The steps of a backup chain, by their Celery task names (the wire contract).
CHAIN = {"stashq.precheck", "stashq.dump_upload", "stashq.update_status",
         "stashq.push_metrics"}
#: Seconds for Flower to answer, to hear the worker, to see a chain's last events.
FLOWER_READY_S = 60
WORKER_SEEN_S = 30
EVENTS_SEEN_S = 60
#: Seconds per HTTP request to Flower.
REQUEST_TIMEOUT_S = 10
USER, PASSWORD = "operator", "flower-test-secret"
SESSION_LINE = re.compile(r"BackupSession/(\S+) created")


@dataclass
class Flower:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str, *, auth: bool = True) -> Any:
        request = urllib.request.Request(self.url + path)
        if auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            body = response.read().decode()
        return json.loads(body) if path.startswith("/api/") else body

    def wait_until(self, what: str, timeout_s: float, check: Any) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"Flower exited {self.proc.returncode}:\n{self.log()}")
            try:
                result = check()
            except (urllib.error.URLError, ConnectionError):
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Flower never {what} within {timeout_s}s:\n{self.log()}")
            time.sleep(0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def flower(stack: Stack, tmp_path: Path) -> Iterator[Flower]:
    port = free_port()
    env = stack.env | {"FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    log_path = tmp_path / "flower.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([STASHQ, "flower", "--address=127.0.0.1", f"--port={port}"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                                start_new_session=True)
    running = Flower(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        running.wait_until("answered", FLOWER_READY_S,
                           lambda: running.get("/healthcheck", auth=False) == "OK")
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def session_tasks(flower: Flower, ref: str) -> dict[str, dict[str, Any]]:
    """Flower's tasks whose arguments name the session, by task name."""
    tasks = flower.get("/api/tasks")
    return {t["name"]: t for t in tasks.values() if ref in (t.get("args") or "")}


def test_flower_lists_every_step_of_a_backup_with_its_final_state(
        stack: Stack, flower: Flower, namespace: str, database: str, bucket: str,
        tmp_path: Path) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower.get("/api/tasks", auth=False)
    assert refused.value.code == 401
    flower.wait_until("heard a worker", WORKER_SEEN_S,
                      lambda: any(flower.get("/api/workers?status=true").values()))

    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    backup = stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    match = SESSION_LINE.search(backup.stdout)
    assert match, backup.stdout
    ref = f"BackupSession/{namespace}/{match.group(1)}"

    def chain_finished() -> dict[str, dict[str, Any]] | None:
        tasks = session_tasks(flower, ref)
        done = set(tasks) >= CHAIN and all(t["state"] == "SUCCESS" for t in tasks.values())
        return tasks if done else None

    tasks = flower.wait_until(f"showed the chain of {ref} finished", EVENTS_SEEN_S,
                              chain_finished)
    assert {name: t["state"] for name, t in tasks.items() if name in CHAIN} == \
        dict.fromkeys(CHAIN, "SUCCESS")
    for task in tasks.values():
        assert task["worker"].startswith("celery@"), task
        assert task["succeeded"] >= task["started"] >= task["received"], task
    # Messages carry the session reference only: Flower shows no secret.
    listing = json.dumps(flower.get("/api/tasks"))
    assert stack.s3.secret_key not in listing
