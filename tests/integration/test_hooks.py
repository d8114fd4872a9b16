"""Hooks around a backup, as a user sees them: a pre hook's write is in the snapshot, a
post hook tells a web server how the backup went, a failing pre hook stops the backup
before anything is stored, an OnFailure hook runs after a failed one, and a hook that
hangs is stopped at its timeout."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.resources import restore_session, standard_setup
from devstack.servers import free_port
from devstack.stack import Stack, created, wait_restore
from tests.integration.test_failures import backup_status


class Receiver:
    """A web server on loopback that records what the hooks send it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append({"path": self.path, "headers": headers,
                                          "body": json.loads(self.rfile.read(length))})
                self.send_response(503 if self.path == "/broken" else 200)
                self.end_headers()
                self.wfile.write(b"noted")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def with_hooks(path: Path, hooks: dict[str, Any]) -> Path:
    """The standard setup's BackupConfiguration (its last document) with ``hooks``."""
    block = yaml.safe_dump({"hooks": hooks}, sort_keys=False)
    path.write_text(path.read_text() + "".join(f"  {line}\n" for line in block.splitlines()))
    return path


def setup(stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
          hooks: dict[str, Any]) -> None:
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)
    stack.cli("apply", "-f", str(with_hooks(resources, hooks)), namespace=namespace,
              check=True)


def stored_keys(stack: Stack, bucket: str) -> list[str]:
    objects = stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return [o["Key"] for o in objects]


def test_a_pre_backup_sql_hooks_marker_row_is_in_the_snapshot(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.markers (note VARCHAR(64))")
    setup(stack, namespace, database, bucket, tmp_path, {"preBackup": [
        {"name": "mark", "sql": {"database": database, "statements": [
            "INSERT INTO markers VALUES (CONCAT('before ', @@hostname IS NOT NULL))",
            "SELECT COUNT(*) FROM markers"]}}]})
    name = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)
    status = backup_status(stack, namespace, name)
    (record,) = status["hooks"]["preBackup"]  # type: ignore[index]
    assert record["name"] == "mark" and record["phase"] == "Succeeded"
    assert record["output"] == "1"  # the SELECT's result
    assert status["conditions"]["PreBackupHookExecutionSucceeded"] == "True"  # type: ignore[index]

    restored = f"{database}_r"
    stack.cli("restore", "--repository", "repo", "--target", "db", "--database", restored,
              "--wait", namespace=namespace, check=True)
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT note FROM `{restored}`.markers")
        assert cur.fetchall() == (("before 1",),)
        cur.execute(f"DROP DATABASE `{restored}`")


def test_a_post_backup_http_hook_tells_the_session_and_its_phase(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        receiver: Receiver) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup(stack, namespace, database, bucket, tmp_path, {"postBackup": [
        {"name": "notify", "httpPost": {"url": f"{receiver.url}/done",
                                        "body": '{"team": "dba"}',
                                        "httpHeaders": [{"name": "Authorization",
                                                         "value": "Bearer s3cr3t-t0ken"}]}},
        {"name": "only-on-failure", "executionPolicy": "OnFailure",
         "httpPost": {"url": f"{receiver.url}/failed"}}]})
    name = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)
    (request,) = receiver.wait_for(1)
    assert request["path"] == "/done"
    assert request["body"] == {"team": "dba", "session": name, "namespace": namespace,
                               "kind": "BackupSession", "phase": "Succeeded",
                               "hookPhase": "postBackup"}
    assert request["headers"]["x-stashq-session"] == name
    status = backup_status(stack, namespace, name)
    assert status["phase"] == "Succeeded"
    (record,) = status["hooks"]["postBackup"]  # type: ignore[index]
    assert record["name"] == "notify" and record["output"] == "200 noted"
    assert "s3cr3t-t0ken" not in stack.worker.log() + json.dumps(status)
    time.sleep(1)
    assert len(receiver.requests) == 1  # OnFailure did not run after a success


def test_a_failing_pre_hook_fails_the_session_with_nothing_uploaded(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        receiver: Receiver) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup(stack, namespace, database, bucket, tmp_path, {
        "preBackup": [{"name": "fine", "sql": {"statements": ["SELECT 1"]}},
                      {"name": "freeze", "sql": {"statements": ["SELECT * FROM nowhere.t"]},
                       "maxRetry": 1},
                      {"name": "never", "sql": {"statements": ["SELECT 2"]}}],
        "postBackup": [{"name": "alert", "executionPolicy": "OnFailure",
                        "httpPost": {"url": f"{receiver.url}/alert"}},
                       {"name": "success-only", "executionPolicy": "OnSuccess",
                        "httpPost": {"url": f"{receiver.url}/ok"}}]})
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    name = created(result.stdout)
    status = backup_status(stack, namespace, name)
    assert status["phase"] == "Failed"
    assert str(status["reason"]).startswith('preBackup hook "freeze" failed: statement 1 failed:')
    assert "nowhere" in str(status["reason"])
    records = status["hooks"]["preBackup"]  # type: ignore[index]
    assert [(r["name"], r["phase"], r["attempts"]) for r in records] == [
        ("fine", "Succeeded", 1), ("freeze", "Failed", 2)]
    assert not any("/data/" in k or "/snapshots/" in k for k in stored_keys(stack, bucket))

    (request,) = receiver.wait_for(1)  # the OnFailure post hook, after the failure
    assert request["path"] == "/alert"
    assert request["body"]["phase"] == "Failed" and request["body"]["session"] == name
    deadline = time.monotonic() + 30
    while "postBackup" not in (backup_status(stack, namespace, name).get("hooks") or {}):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert len(receiver.requests) == 1


def test_an_on_failure_post_hook_runs_after_a_failed_dump(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        receiver: Receiver) -> None:
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)
    # The dump client refuses an unknown option: the data step fails, after pre-check.
    text = resources.read_text().replace(
        "      - {name: databases", "      - {name: args, value: --no-such-option}\n"
                                    "      - {name: databases")
    resources.write_text(text)
    with_hooks(resources, {"postBackup": {"httpPost": {"url": f"{receiver.url}/x"},
                                          "executionPolicy": "OnFailure"}})
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    name = created(result.stdout)
    (request,) = receiver.wait_for(1)
    assert request["body"]["session"] == name and request["body"]["phase"] == "Failed"
    status = backup_status(stack, namespace, name)
    assert status["phase"] == "Failed" and "no-such-option" in str(status["reason"])


def test_a_failing_post_hook_fails_a_succeeded_backup_unless_told_to_ignore(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        receiver: Receiver) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup(stack, namespace, database, bucket, tmp_path, {"postBackup": [
        {"name": "optional", "failurePolicy": "Ignore",
         "httpPost": {"url": f"{receiver.url}/broken"}},
        {"name": "required", "httpPost": {"url": f"{receiver.url}/broken",
                                          "expectedStatus": 200}}]})
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    name = created(result.stdout)
    deadline = time.monotonic() + 60
    while backup_status(stack, namespace, name).get("phase") != "Failed":
        assert time.monotonic() < deadline, backup_status(stack, namespace, name)
        time.sleep(0.2)
    status = backup_status(stack, namespace, name)
    assert str(status["reason"]).startswith('postBackup hook "required" failed: POST ')
    assert "answered 503 (expected 200)" in str(status["reason"])
    assert status["failedStep"] == "stashq.post_hooks"
    assert status["snapshot"]["name"] == name  # type: ignore[index]  # the snapshot stays
    assert status["conditions"]["PostBackupHookExecutionSucceeded"] == "False"  # type: ignore[index]
    assert len(receiver.requests) == 2


def sleeping(pattern: str) -> list[int]:
    """Pids of processes whose command line holds ``pattern``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if pattern.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("kind", ["exec", "sql"])
def test_a_hook_that_hangs_is_stopped_at_its_timeout(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        kind: str) -> None:
    marker = f"{time.time_ns() % 10**9}.5"  # seconds to sleep: unique, so findable
    action = ({"exec": {"command": ["/bin/sh", "-c", f"sleep {marker}; echo woke"]}}
              if kind == "exec" else {"sql": {"statements": [f"SELECT SLEEP({marker})"]}})
    setup(stack, namespace, database, bucket, tmp_path,
          {"preBackup": [{"name": "hang", "timeout": "2s", **action}]})
    started = time.monotonic()
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8
    status = backup_status(stack, namespace, created(result.stdout))
    assert "timed out after 2 s" in str(status["reason"])
    assert str(status["reason"]).startswith('preBackup hook "hang" failed')
    assert time.monotonic() - started < 60
    if kind == "exec":
        assert sleeping(f"sleep {marker}") == []  # the shell's child was killed too
    else:
        with stack.mariadb.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                        "WHERE INFO LIKE %s AND INFO NOT LIKE '%%PROCESSLIST%%'",
                        (f"%SLEEP({marker})%",))
            assert cur.fetchone() == (0,)


def hook_template(name: str, url: str) -> str:
    return yaml.safe_dump({"apiVersion": "stashq.io/v1alpha1", "kind": "HookTemplate",
                           "metadata": {"name": name},
                           "spec": {"httpPost": {"url": url, "body": '{"from": "template"}'},
                                    "timeout": "10s"}})


def restore_with_hooks(stack: Stack, namespace: str, tmp_path: Path, name: str, snapshot: str,
                       restored: str, hooks: dict[str, Any]) -> dict[str, Any]:
    """RestoreSession ``name`` of ``snapshot`` into database ``restored``, with ``hooks``,
    applied (so queued) as a user would; its final status."""
    session = yaml.safe_load(restore_session(
        name, target={"rules": [{"snapshots": [snapshot]}]},
        task={"params": [{"name": "database", "value": restored}]}))
    session["spec"]["hooks"] = hooks
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(session))
    stack.cli("apply", "-f", str(tmp_path / f"{name}.yaml"), namespace=namespace, check=True)
    return wait_restore(stack, namespace, name, 120)


def test_restore_hooks_and_one_hook_template_for_a_backup_and_a_restore(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        receiver: Receiver) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
        cur.execute(f"INSERT INTO `{database}`.t VALUES (1), (2), (3)")
    (tmp_path / "template.yaml").write_text(hook_template("notify", f"{receiver.url}/n"))
    stack.cli("apply", "-f", str(tmp_path / "template.yaml"), namespace=namespace, check=True)
    setup(stack, namespace, database, bucket, tmp_path,
          {"postBackup": [{"hookTemplate": {"name": "notify"}}]})
    backup = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                               check=True).stdout)
    restored = f"{database}_r"
    counted = f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{restored}'"
    status = restore_with_hooks(stack, namespace, tmp_path, "back", backup, restored, {
        "preRestore": [{"name": "before", "sql": {"statements": [counted]}}],
        "postRestore": [{"name": "after", "sql": {"statements": [
                            f"SELECT COUNT(*) FROM `{restored}`.t"]}},
                        {"hookTemplate": {"name": "notify"}, "executionPolicy": "OnSuccess"}]})
    assert status["phase"] == "Succeeded", status
    assert [(r["name"], r["output"]) for r in status["hooks"]["preRestore"]] == [("before", "0")]
    post = status["hooks"]["postRestore"]
    assert [(r["name"], r["phase"]) for r in post] == [("after", "Succeeded"),
                                                       ("notify", "Succeeded")]
    assert post[0]["output"] == "3"  # ran after the rows were restored
    assert status["conditions"]["PostRestoreHookExecutionSucceeded"] == "True"
    requests = receiver.wait_for(2)
    assert [(r["body"]["kind"], r["body"]["session"], r["body"]["hookPhase"],
             r["body"]["phase"], r["body"]["from"]) for r in requests] == [
        ("BackupSession", backup, "postBackup", "Succeeded", "template"),
        ("RestoreSession", "back", "postRestore", "Succeeded", "template")]
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{restored}`")


def test_a_failing_pre_restore_hook_fails_the_restore_before_anything_is_restored(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        receiver: Receiver) -> None:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    (tmp_path / "template.yaml").write_text(hook_template("notify", f"{receiver.url}/n"))
    stack.cli("apply", "-f", str(tmp_path / "template.yaml"), namespace=namespace, check=True)
    setup(stack, namespace, database, bucket, tmp_path, {})
    backup = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                               check=True).stdout)
    restored = f"{database}_r"
    (tmp_path / "typo.yaml").write_text(restore_session("typo") + "  hooks:\n    postRestore:"
                                        "\n      - hookTemplate: {name: notfiy}\n")
    refused = stack.cli("apply", "-f", str(tmp_path / "typo.yaml"), namespace=namespace)
    assert refused.returncode == 2
    assert ('RestoreSession "typo": spec.hooks.postRestore[0].hookTemplate.name: HookTemplate '
            f'"notfiy" does not exist in namespace "{namespace}"') in refused.stderr
    status = restore_with_hooks(stack, namespace, tmp_path, "back", backup, restored, {
        "preRestore": [{"name": "gate", "sql": {"statements": ["SELECT * FROM nowhere.t"]}}],
        "postRestore": [{"hookTemplate": {"name": "notify"}, "executionPolicy": "OnFailure"}]})
    assert status["phase"] == "Failed"
    assert str(status["reason"]).startswith('preRestore hook "gate" failed: statement 1 failed')
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                    (restored,))
        assert cur.fetchone() == (0,)  # nothing restored
        cur.execute(f"DROP DATABASE IF EXISTS `{restored}`")
    (request,) = receiver.wait_for(1)  # the template, as an OnFailure post hook
    assert request["body"]["kind"] == "RestoreSession" and request["body"]["phase"] == "Failed"
