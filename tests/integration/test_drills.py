"""Restore drills as an auditor sees them: a good snapshot restores with every row, a
snapshot whose restore loses rows fails naming the table, a scheduled drill records
its verdict and metrics, and a drill that would restore over its source is refused."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from benchmarks.common import client_options
from devstack.resources import standard_setup
from devstack.sample import create_sample
from devstack.stack import Deployment, Stack, created
from workers.app import create_app
from workers.engines.mysql import CONSISTENT_DUMP_OPTIONS
from workers.repository import Repository
from workers.state.redis import RedisStore
from workers.steps.restore_drill import DRILL_TASK
from workers.storage.local import LocalStorage
from workflows.phases import iso_ms
from workflows.resources import RestoreDrill
from workflows.row_digests import RowDigester, digest_text
from workflows.settings import Settings
from workflows.snapshots import Snapshot, TableRows


def scratch_databases(stack: Stack, prefix: str) -> list[str]:
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (prefix.replace("_", "\\_") + "%",))
        return [name for (name,) in cur.fetchall()]


def backed_up(stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
              **sample: int) -> str:
    """A sample database backed up by "nightly"; the snapshot's id."""
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, **sample)
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    return created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)


def test_a_good_snapshot_passes_its_drill_with_every_row_counted(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    snapshot = backed_up(stack, namespace, database, bucket, tmp_path, customers=300)
    listing = json.loads(stack.cli("snapshots", "repo", "-o", "json", namespace=namespace,
                                   check=True).stdout)
    rows = {t["table"]: t["rows"] for t in listing[0]["streams"][0]["tableRows"]}
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        for table in ("customers", "orders", "attachments"):
            cur.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}`")
            assert rows[f"{database}.{table}"] == cur.fetchone()[0]  # counted as dumped
    result = stack.cli("verify", snapshot, "--target", "db", "--repository", "repo",
                       "--prefix", "drill_", namespace=namespace)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"into drill_{database} on AppBinding db" in result.stdout
    assert f"{len(rows)} table(s), {sum(rows.values())} row(s) checked" in result.stdout
    assert "passed" in result.stdout
    assert scratch_databases(stack, f"drill_{database}") == []  # dropped


def lossy_snapshot(stack: Stack, database: str, repo_dir: Path, lost_table: str) -> str:
    """A snapshot whose manifest counts every row of ``database`` but whose stream lost
    the INSERT statements of ``lost_table`` on the way (a dump cut, as users have seen
    from other tools): written through the Repository object as a backup writes one."""
    with client_options(stack.mariadb) as cnf:
        dump = subprocess.run(["mariadb-dump", f"--defaults-file={cnf}",
                               *CONSISTENT_DUMP_OPTIONS, database], check=True,
                              capture_output=True).stdout
    counted = RowDigester(database)
    counted.feed(dump)
    rows = tuple(TableRows(table=t, rows=c.rows, digest=digest_text(c.digest))
                 for t, c in sorted(counted.finish().items()))
    head = f"INSERT INTO `{lost_table}` VALUES".encode()
    start = dump.index(head)
    lossy = dump[:start] + dump[dump.index(b");\n", start) + 3:]
    repo, now = Repository(LocalStorage(repo_dir), "lossy"), datetime.now(UTC)
    repo.ensure_config(contextlib.nullcontext)
    stream = repo.write_stream("nightly-1", "dump.sql.zst", [lossy], level=1)
    repo.commit(Snapshot(id="nightly-1", session="nightly-1", repository="lossy",
                         engine="mariadb", server_version="10.11", target="db",
                         configuration="nightly", databases=(database,),
                         streams=(stream.model_copy(update={"table_rows": rows}),),
                         started_at=now, finished_at=now))
    return "nightly-1"


def test_a_snapshot_whose_restore_loses_rows_fails_naming_the_table(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    backed_up(stack, namespace, database, bucket, tmp_path, customers=50)
    snapshot = lossy_snapshot(stack, database, tmp_path / "lossy", "orders")
    (tmp_path / "lossy.yaml").write_text(yaml.safe_dump({
        "apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
        "metadata": {"name": "lossy"},
        "spec": {"backend": {"local": {"mountPath": str(tmp_path / "lossy")}}}}))
    stack.cli("apply", "-f", str(tmp_path / "lossy.yaml"), namespace=namespace, check=True)
    result = stack.cli("verify", snapshot, "--target", "db", "--repository", "lossy",
                       "--prefix", "drill_", namespace=namespace)
    assert result.returncode == 7, result.stdout + result.stderr
    assert f"failed: table {database}.orders: 250 rows dumped, 0 restored" in result.stdout
    assert "customers" not in result.stdout.split("FAILED", 1)[1]  # only the table that lost
    assert scratch_databases(stack, f"drill_{database}") == []


def drill_yaml(database: str, *, scratch: str = "db", expected: str = "50",
               schedule: str = "0 4 * * 0", **spec: object) -> str:
    return yaml.safe_dump({
        "apiVersion": "stashq.io/v1alpha1", "kind": "RestoreDrill",
        "metadata": {"name": "weekly"},
        "spec": {"schedule": schedule, "repository": {"name": "repo"},
                 "configurations": ["nightly"],
                 "scratch": {"ref": {"name": scratch}, "databasePrefix": "drill_"},
                 "assertions": [
                     {"name": "customers", "query": "SELECT COUNT(*) FROM customers",
                      "expected": expected},
                     {"name": "no orphans", "query": "SELECT COUNT(*) FROM orders o LEFT JOIN "
                      "customers c ON c.id = o.customer_id WHERE c.id IS NULL",
                      "expectedRows": [["0"]]}]} | spec}, sort_keys=False)


def apply_drill(stack: Stack, namespace: str, tmp_path: Path, drill: str) -> None:
    """``stashq apply`` of a RestoreDrill's YAML (``drill_yaml``), as a user would."""
    path = tmp_path / "drill.yaml"
    path.write_text(drill)
    stack.cli("apply", "-f", str(path), namespace=namespace, check=True)


def timed_out(status: dict[str, object], snapshot: str) -> None:
    """The status of a drill of ``snapshot`` stopped at its 8 s ``timeoutSeconds``."""
    assert status["phase"] == "Failed" and status.get("running") is None
    last = status["configurations"]["nightly"]["last"]  # type: ignore[index]
    assert last["snapshot"] == snapshot
    assert last["failures"] == ['RestoreDrill "weekly" timed out after 8 s and was stopped']
    assert 8 <= last["durationSeconds"] < 30


def run_drill(runner: Stack | Deployment, namespace: str) -> dict[str, object]:
    """Send RestoreDrill "weekly" as beat does at a slot; its status once the worker
    recorded it."""
    store, deadline = RedisStore.from_url(runner.redis_url), time.monotonic() + 120
    before = store.get(RestoreDrill, "weekly", namespace).status.get("lastDrillTime")
    create_app(Settings.from_env(runner.env)).signature(
        DRILL_TASK, args=(namespace, "weekly")).apply_async()
    while True:
        status = store.get(RestoreDrill, "weekly", namespace).status
        if status.get("lastDrillTime") != before and not status.get("running"):
            return status
        logs = runner.logs() if isinstance(runner, Deployment) else runner.worker.log()
        assert time.monotonic() < deadline, logs[-3000:]
        time.sleep(0.3)


def test_a_scheduled_drill_records_its_verdict_and_metrics(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    snapshot = backed_up(stack, namespace, database, bucket, tmp_path, customers=50)
    # "nightly" names its database: a scratch beside it is safe
    apply_drill(stack, namespace, tmp_path, drill_yaml(database, expected="49"))
    status = run_drill(stack, namespace)
    assert status["phase"] == "Failed"
    last = status["configurations"]["nightly"]["last"]  # type: ignore[index]
    assert last["snapshot"] == snapshot and last["result"] == "Failed"
    assert last["failures"] == ['assertion "customers": expected "49", got "50"']
    assert "lastPassed" not in status["configurations"]["nightly"]  # type: ignore[index]

    apply_drill(stack, namespace, tmp_path, drill_yaml(database))
    status = run_drill(stack, namespace)
    assert status["phase"] == "Passed", status
    entry = status["configurations"]["nightly"]  # type: ignore[index]
    assert entry["lastPassed"] == snapshot and entry["last"]["failures"] == []
    assert entry["last"]["tables"] == 3 and entry["last"]["durationSeconds"] > 0
    assert scratch_databases(stack, f"drill_{database}") == []
    with urllib.request.urlopen(f"{stack.pushgateway.url}/metrics") as response:
        metrics = response.read().decode()
    mine = [line for line in metrics.splitlines()
            if f'namespace="{namespace}"' in line and 'drill="weekly"' in line]
    assert any(line.startswith("stashq_restoredrill_success{") and line.endswith(" 1")
               for line in mine), mine
    assert any(line.startswith("stashq_restoredrill_last_success_time_seconds{")
               for line in mine)


def test_a_drill_that_would_restore_over_its_source_is_refused_at_apply(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    resources = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket,
                               database)
    every = resources.read_text().replace(f'value: "{database}"', 'value: ""')
    (tmp_path / "every.yaml").write_text(every)
    drill = tmp_path / "drill.yaml"
    drill.write_text(drill_yaml(database))
    refused = stack.cli("apply", "-f", str(tmp_path / "every.yaml"), "-f", str(drill),
                        namespace=namespace)
    assert refused.returncode == 2
    assert ('RestoreDrill "weekly": spec.scratch: refused: BackupConfiguration "nightly": '
            'AppBinding "db" is the server of AppBinding "db", whose every database is '
            "backed up") in refused.stderr
    # Naming its database, the configuration's snapshots restore beside it: accepted.
    accepted = stack.cli("apply", "-f", str(resources), "-f", str(drill), namespace=namespace)
    assert accepted.returncode == 0, accepted.stderr


def test_a_drill_that_hangs_is_stopped_at_its_timeout_and_says_so(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    snapshot = backed_up(stack, namespace, database, bucket, tmp_path, customers=20)
    marker = f"{time.time_ns() % 10**9}.5"  # seconds to sleep: unique, so findable
    apply_drill(stack, namespace, tmp_path, drill_yaml(database, timeoutSeconds=8, assertions=[
        {"name": "slow", "query": f"SELECT SLEEP({marker})", "expected": "0"}]))
    started = time.monotonic()
    status = run_drill(stack, namespace)
    assert time.monotonic() - started < 60
    timed_out(status, snapshot)
    assert scratch_databases(stack, f"drill_{database}") == []  # dropped all the same
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE INFO LIKE %s AND INFO NOT LIKE '%%PROCESSLIST%%'",
                    (f"%SLEEP({marker})%",))
        assert cur.fetchone() == (0,)  # the query was killed, not left running


def test_a_drill_that_breaks_unexpectedly_is_failed_and_no_longer_running(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    backed_up(stack, namespace, database, bucket, tmp_path, customers=5)
    apply_drill(stack, namespace, tmp_path, drill_yaml(database, expected="5"))
    store = RedisStore.from_url(stack.redis_url)  # a status mangled by hand: not a mapping
    store.patch_status(RestoreDrill, "weekly", namespace, {"configurations": ["mangled"]})
    status = run_drill(stack, namespace)
    assert status["phase"] == "Failed" and status.get("running") is None
    assert status["reason"] == "unexpected AttributeError; the worker log has the details"
    assert "Traceback" in stack.worker.log()


def test_runs_of_one_drill_never_overlap_and_a_dead_runs_claim_is_taken_over(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from workers.drill_runs import run_restore_drill

    backed_up(stack, namespace, database, bucket, tmp_path, customers=50)
    apply_drill(stack, namespace, tmp_path, drill_yaml(database))
    store, settings = RedisStore.from_url(stack.redis_url), Settings.from_env(stack.env)

    def held_by(task: str, since: str) -> None:
        store.patch_status(RestoreDrill, "weekly", namespace,
                           {"running": since, "runningTask": task})

    live = iso_ms(time.time())
    held_by("first", live)  # a run on another worker, under way
    assert run_restore_drill(settings, store, namespace, "weekly", task_id="second") == []
    status = store.get(RestoreDrill, "weekly", namespace).status
    assert (status["running"], status["runningTask"]) == (live, "first")
    assert "lastDrillTime" not in status and scratch_databases(stack, "drill_") == []
    assert "is running since" in caplog.text and "this run is skipped" in caplog.text

    # the same message again: its worker died and the broker redelivered it
    reports = run_restore_drill(settings, store, namespace, "weekly", task_id="first")
    assert [r.passed for r in reports] == [True]
    status = store.get(RestoreDrill, "weekly", namespace).status
    assert status["phase"] == "Passed" and not status.get("running")
    assert not status.get("runningTask")

    held_by("dead", "2020-01-01T00:00:00.000Z")  # far past the drill's timeoutSeconds
    reports = run_restore_drill(settings, store, namespace, "weekly", task_id="third")
    assert [r.passed for r in reports] == [True]
    assert "taken as dead" in caplog.text


def test_a_run_whose_claim_was_taken_over_leaves_the_new_claim_and_verdict_alone(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    from workers.drill_runs import Claim

    backed_up(stack, namespace, database, bucket, tmp_path, customers=10)
    apply_drill(stack, namespace, tmp_path, drill_yaml(database, expected="10"))
    store = RedisStore.from_url(stack.redis_url)
    slow = Claim.take(store, store.get(RestoreDrill, "weekly", namespace), "slow", 3600)
    assert slow is not None
    # the slow run outlived timeoutSeconds + grace: another run took over
    taken_over = iso_ms(time.time() - 10)
    store.patch_status(RestoreDrill, "weekly", namespace,
                       {"running": taken_over, "runningTask": "next"})
    slow.release({"phase": "Failed", "reason": "late"})
    status = store.get(RestoreDrill, "weekly", namespace).status
    assert (status["running"], status["runningTask"]) == (taken_over, "next")
    assert status.get("reason") != "late"
    # the same message again, 10 s on: within a visibility timeout of 60 s only a dead
    # worker's message comes back; past one of 5 s it may be a live run's, and waits
    drill = store.get(RestoreDrill, "weekly", namespace)
    assert Claim.take(store, drill, "next", 5) is None
    assert Claim.take(store, drill, "next", 60) is not None
