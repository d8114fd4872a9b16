"""Waiting for a session as a user does: the totals stay on the last progress line and
in the final one; a session no worker will take is said to be so, with the remedy."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

from devstack.resources import standard_setup
from devstack.sample import create_sample
from devstack.stack import STASHQ, Deploy, Stack
from workers.app import QUEUES, create_app, unconsumed_queues
from workflows.settings import Settings

TOTALS = re.compile(r"(\d+\.\d) (KiB|MiB) dumped, (\d+\.\d) (KiB|MiB) stored, "
                    r"\d+\.\d (KiB|MiB|GiB)/s")


def on_terminal(stack: Stack, *args: str, namespace: str) -> tuple[int, str, str]:
    """``stashq ARGS`` with stderr on a pseudo-terminal; exit code, stdout, what the
    terminal got."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([STASHQ, *args], env=stack.env | {"STASHQ_NAMESPACE": namespace},
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    screen = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not data:
            break
        screen += data
    os.close(master)
    assert proc.stdout is not None
    stdout = proc.stdout.read()
    return proc.wait(timeout=60), stdout, screen.decode()


def test_the_last_progress_line_and_the_final_line_keep_the_totals(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=300)
    setup = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    code, stdout, screen = on_terminal(stack, "backup", "nightly", "--wait", "--timeout", "120",
                                       namespace=namespace)
    assert code == 0, stdout + screen
    last = screen.rstrip("\r\n").split("\r")[-1]  # what stays on the terminal
    assert last.startswith("Succeeded") and TOTALS.search(last) and " in " in last, screen
    final = stdout.splitlines()[-1]
    assert re.fullmatch(r"BackupSession/\S+ Succeeded in [\d.]+s: " + TOTALS.pattern, final), final


def test_waiting_with_no_worker_says_so_and_how_to_start_one(
        deploy: Deploy, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    deployment = deploy()  # its workers are started by the test: none yet
    with deployment.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup = standard_setup(tmp_path / "setup.yaml", deployment.s3, deployment.mariadb, bucket,
                           database)
    deployment.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    waiting = subprocess.Popen([STASHQ, "backup", "nightly", "--wait", "--timeout", "60"],
                               env=deployment.env | {"STASHQ_NAMESPACE": namespace},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None
    lines = []
    for line in waiting.stderr:  # the notice comes after PENDING_NOTICE_S, not the timeout
        lines.append(line)
        if "no worker" in line:
            break
    assert re.fullmatch(r"BackupSession/nightly-\d+: still Pending after \d+s: no worker "
                        r"consumes queue stashq\.data, stashq\.control\. Start one with the "
                        r"same STASHQ_BROKER_URL: `stashq worker` \(still waiting; Ctrl-C "
                        r"stops waiting, not the session\)\n", lines[-1]), lines

    deployment.start_worker()  # and the wait goes on to the end
    stdout, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, stdout + stderr
    assert re.search(r"BackupSession/\S+ Succeeded in", stdout)


def test_unconsumed_queues_asks_the_running_workers(deploy: Deploy) -> None:
    deployment = deploy()
    app = create_app(Settings.from_env(deployment.env))
    assert unconsumed_queues(app) == list(QUEUES)
    deployment.start_worker()
    assert unconsumed_queues(app) == []
