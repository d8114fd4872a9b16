"""Restore drills of physical snapshots: the data directory is unpacked, prepared and
started as a throw-away server on the worker, every table is checked there, then the
assertions run; the server is stopped and its directory removed whatever happened. A
good snapshot passes; a damaged table and an assertion that does not hold fail it,
named; a drill that hangs on the throw-away server is stopped at its timeout."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from benchmarks.common import client_options
from devstack.sample import create_sample
from devstack.stack import Stack, created
from tests.integration.test_drills import apply_drill, run_drill, timed_out
from tests.integration.test_physical import physical_setup
from workers.engines.physical import DATA_STREAM
from workers.repository import Repository
from workers.storage.local import LocalStorage
from workflows.snapshots import Snapshot

#: An InnoDB page, in bytes (the test server's default page size).
PAGE_BYTES = 16384


def physical_backup(stack: Stack, namespace: str, database: str, bucket: str,
                    tmp_path: Path, customers: int) -> str:
    """A sample database, and a physical snapshot of its server by "nightly"."""
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{database}`")
        create_sample(conn, database, customers=customers)
    stack.cli("apply", "-f", str(physical_setup(tmp_path / "s.yaml", stack, bucket)),
              namespace=namespace, check=True)
    return created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                             check=True).stdout)


def physical_drill_yaml(database: str, *, timeout_s: int = 600,
                        assertions: list[dict[str, object]]) -> str:
    """A drill of "nightly"; its scratch target is the source server itself, which a
    physical drill never writes to (it restores on the worker)."""
    return yaml.safe_dump({
        "apiVersion": "stashq.io/v1alpha1", "kind": "RestoreDrill",
        "metadata": {"name": "weekly"},
        "spec": {"schedule": "0 4 * * 0", "repository": {"name": "repo"},
                 "configurations": ["nightly"], "timeoutSeconds": timeout_s,
                 "scratch": {"ref": {"name": "db"}, "databasePrefix": "drill_"},
                 "assertions": assertions}}, sort_keys=False)


def leftovers(stack: Stack) -> list[str]:
    """Drill directories left in the worker's TMPDIR, and throw-away servers running."""
    tmp = Path(stack.env["TMPDIR"])
    running = subprocess.run(["pgrep", "-f", f"mariadbd .*--datadir={tmp}/stashq-drill-"],
                             capture_output=True, text=True).stdout.split()
    return [p.name for p in tmp.glob("stashq-drill-*")] + running


def test_a_good_physical_snapshot_passes_its_drill_on_a_throwaway_server(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    snapshot = physical_backup(stack, namespace, database, bucket, tmp_path, customers=60)
    with stack.mariadb.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{database}`.customers")
        customers = cur.fetchone()[0]
    apply_drill(stack, namespace, tmp_path, physical_drill_yaml(database, assertions=[
        {"name": "customers", "query": f"SELECT COUNT(*) FROM `{database}`.customers",
         "expected": str(customers)}]))  # not refused
    started = time.monotonic()
    status = run_drill(stack, namespace)
    print(f"\nphysical drill: {time.monotonic() - started:.1f} s as seen by the test")
    assert status["phase"] == "Passed", status
    last = status["configurations"]["nightly"]["last"]  # type: ignore[index]
    assert last["snapshot"] == snapshot and last["failures"] == []
    assert last["tables"] >= 3 and last["rows"] >= customers
    assert last["notes"] == ["rows counted, not compared: a physical backup records no row "
                             "counts or digests"]
    assert leftovers(stack) == []


def damaged_snapshot(stack: Stack, database: str, table: str, work: Path,
                     repo_dir: Path) -> str:
    """A physical snapshot of the test server whose ``table`` has damaged pages (as a
    disk or a copy can damage them): mariadb-backup's stream, prepared, pages of the
    table's tablespace overwritten, streamed again, stored through the Repository object."""
    data = work / "data"
    data.mkdir(parents=True)
    with client_options(stack.mariadb) as cnf:
        backup = subprocess.run(["mariadb-backup", f"--defaults-file={cnf}", "--backup",
                                 "--stream=xbstream", f"--target-dir={work / 'target'}"],
                                check=True, capture_output=True).stdout
    subprocess.run(["mbstream", "-x", "-C", str(data)], input=backup, check=True)
    subprocess.run(["mariadb-backup", "--no-defaults", "--prepare", f"--target-dir={data}"],
                   check=True, capture_output=True)
    tablespace = data / database / f"{table}.ibd"
    with tablespace.open("r+b") as f:  # pages 0-2 hold the file's own headers: keep them
        for page in range(3, tablespace.stat().st_size // PAGE_BYTES):
            f.seek(page * PAGE_BYTES + 200)
            f.write(b"\xde\xad\xbe\xef" * 64)
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    stream = subprocess.run(["mbstream", "-c", *files], cwd=data, check=True,
                            capture_output=True).stdout
    shutil.rmtree(data)
    repo, now = Repository(LocalStorage(repo_dir), "damaged"), datetime.now(UTC)
    repo.ensure_config(contextlib.nullcontext)
    stored = repo.write_stream("nightly-1", DATA_STREAM, [stream], level=1)
    repo.commit(Snapshot(id="nightly-1", session="nightly-1", repository="damaged",
                         kind="physical", method="mariabackup", engine="mariadb",
                         server_version="10.11", target="db", configuration="nightly",
                         streams=(stored,), started_at=now, finished_at=now))
    return "nightly-1"


def test_a_physical_snapshot_with_a_damaged_table_fails_naming_it_and_the_assertion(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    physical_backup(stack, namespace, database, bucket, tmp_path, customers=60)
    snapshot = damaged_snapshot(stack, database, "orders", tmp_path / "work",
                                tmp_path / "damaged")
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({
        "apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
        "metadata": {"name": "damaged"},
        "spec": {"backend": {"local": {"mountPath": str(tmp_path / "damaged")}}}})
        + "---\n" + physical_drill_yaml(database, assertions=[
            {"name": "customers", "query": f"SELECT COUNT(*) FROM `{database}`.customers",
             "expected": "60"},
            {"name": "no such customer", "query": f"SELECT COUNT(*) FROM `{database}`."
             "customers WHERE id = 100000", "expected": "1"}]))
    stack.cli("apply", "-f", str(tmp_path / "more.yaml"), namespace=namespace, check=True)
    result = stack.cli("verify", snapshot, "--drill", "weekly", "--repository", "damaged",
                       namespace=namespace)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "restoring into a throw-away server on this host" in result.stdout
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed: ")]
    assert failed == [
        f"failed: table {database}.orders: CHECK TABLE: Table `{database}`.`orders` is "
        "corrupted. Please drop the table and recreate.; Corrupt",
        'failed: assertion "no such customer": expected "1", got "0"'], result.stdout
    assert leftovers(stack) == []


def test_a_physical_drill_that_hangs_is_stopped_and_its_server_removed(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    snapshot = physical_backup(stack, namespace, database, bucket, tmp_path, customers=10)
    apply_drill(stack, namespace, tmp_path, physical_drill_yaml(database, timeout_s=8, assertions=[
        {"name": "slow", "query": "SELECT SLEEP(600)", "expected": "0"}]))
    started, logged = time.monotonic(), len(stack.worker.log())
    status = run_drill(stack, namespace)
    assert time.monotonic() - started < 60
    timed_out(status, snapshot)
    assert "throw-away mariadbd (pid" in stack.worker.log()[logged:]  # stopped while it ran
    assert leftovers(stack) == []
