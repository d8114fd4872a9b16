"""The pieces of a physical drill that are decisions over values: whether CHECK TABLE's
rows say a table is broken, which layout options of a snapshot's ``backup-my.cnf`` reach
the throw-away server (and which never do), the notes a drill's status carries, and a
prepare that hangs stopped at the drill's timeout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.drill_checks import _plain, check_problem
from workers.drill_server import layout_options, server_args, server_binary
from workers.engines.physical import prepare
from workers.watchdog import TimedOut, Watchdog
from workflows.drills import DrillReport
from workflows.errors import PrecheckFailed
from workflows.resources import Engine

T = "shop.orders"


@pytest.mark.parametrize(("rows", "problem"), [
    ([(T, "check", "status", "OK")], None),
    ([(T, "check", "status", "Table is already up to date")], None),
    ([(T, "check", "note", "The storage engine for the table doesn't support check")], None),
    ([(T, "check", "warning", "Size of datafile is: 7"), (T, "check", "status", "OK")], None),
    ([(T, "check", "Error", "Table `shop`.`orders` is corrupted"), (T, "check", "error",
                                                                   "Corrupt")],
     "CHECK TABLE: Table `shop`.`orders` is corrupted; Corrupt"),
    ([(T, "check", "status", "Operation failed")], "CHECK TABLE: Operation failed"),
])
def test_check_table_rows_say_whether_the_table_is_broken(
        rows: list[tuple[str, str, str, str]], problem: str | None) -> None:
    assert check_problem(rows) == problem


def test_a_quoted_table_is_named_as_the_logical_drill_names_it() -> None:
    assert _plain("`shop`.`orders`") == "shop.orders"
    assert _plain("`we``ird`.`t`") == "we`ird.t"


def test_only_plain_layout_options_of_backup_my_cnf_reach_the_server(tmp_path: Path) -> None:
    (tmp_path / "backup-my.cnf").write_text(
        "# generated\n[mysqld]\ninnodb_checksum_algorithm=crc32\n"
        "innodb_data_file_path=ibdata1:12M:autoextend\ninnodb_page_size=16384\n"
        "innodb_undo_directory=./\ninnodb_log_file_size=100663296\n"
        "innodb_undo_tablespaces=0 --plugin-load=x\nplugin_load=evil.so\n"
        "innodb-undo-tablespaces = 2\n")
    assert layout_options(tmp_path) == [
        "--innodb-checksum-algorithm=crc32",
        "--innodb-data-file-path=ibdata1:12M:autoextend", "--innodb-page-size=16384",
        "--innodb-undo-tablespaces=2"]
    assert layout_options(tmp_path / "none") == []


def test_the_throwaway_server_is_private_and_reads_no_host_config(tmp_path: Path) -> None:
    argv = server_args("/usr/sbin/mariadbd", tmp_path / "data", tmp_path)
    assert argv[1] == "--no-defaults"  # must come first
    assert {"--skip-networking", "--skip-grant-tables", "--skip-log-bin",
            "--skip-slave-start", "--event-scheduler=DISABLED"} <= set(argv)
    assert f"--socket={tmp_path / 'mariadbd.sock'}" in argv
    assert not any(a.startswith(("--port", "--bind-address")) for a in argv)


def test_notes_are_in_the_status_only_when_there_are_some() -> None:
    report = DrillReport("s1", "nightly", tables=3, rows=80)
    assert "notes" not in report.record(now_iso="t")
    report.notes.append("rows counted, not compared")
    assert report.record(now_iso="t")["notes"] == ["rows counted, not compared"]
    assert report.record(now_iso="t")["result"] == "Passed"


def test_a_prepare_that_hangs_is_killed_at_the_drills_timeout(tmp_path: Path) -> None:
    tool = tmp_path / "mariadb-backup"  # stands in for a prepare stuck on a huge redo log
    tool.write_text("#!/bin/sh\nexec sleep 600\n")
    tool.chmod(0o755)
    started = time.monotonic()
    with Watchdog(1, "RestoreDrill \"weekly\"") as dog, pytest.raises(TimedOut) as raised:
        prepare(str(tool), tmp_path, [], dog.watching)
    assert time.monotonic() - started < 10
    assert str(raised.value) == 'RestoreDrill "weekly" timed out after 1 s and was stopped'


def test_a_mysql_flavored_server_keeps_its_x_plugin_socket_closed(tmp_path: Path) -> None:
    mysql = server_args("/usr/sbin/mysqld", tmp_path / "data", tmp_path, Engine.MYSQL)
    mariadb = server_args("/usr/sbin/mariadbd", tmp_path / "data", tmp_path, Engine.MARIADB)
    assert "--mysqlx=OFF" in mysql and "--mysqlx=OFF" not in mariadb
    as_root = os.geteuid() == 0  # mariadbd refuses root without --user; others run as is
    assert ("--user=root" in mariadb) is as_root


def test_a_percona_snapshot_is_not_opened_with_mariadbs_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "mysqld"  # MariaDB's packages install a mysqld too
    fake.write_text("#!/bin/sh\necho 'mysqld  Ver 10.11.19-MariaDB-0+deb12u1 for debian'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("workers.engines.physical.SBIN_DIRS", ())
    with pytest.raises(PrecheckFailed, match="is MariaDB's server, which cannot open a "
                                             "perconaxtradb snapshot"):
        server_binary(Engine.PERCONA_XTRADB)
    assert server_binary(Engine.MARIADB) == str(fake)  # MariaDB's own, under that name


def test_a_drill_directory_of_a_dead_worker_is_removed_by_the_next_drill(
        tmp_path: Path) -> None:
    from workers.physical_drills import OWNER_FILE, WORK_PREFIX, remove_dead_drills

    gone = subprocess.Popen(["true"])
    gone.wait()
    living = subprocess.Popen(["sleep", "60"])
    try:
        for name, pid in (("dead", gone.pid), ("live", living.pid), ("mine", os.getpid())):
            work = tmp_path / f"{WORK_PREFIX}{name}"
            (work / "data").mkdir(parents=True)
            (work / OWNER_FILE).write_text(str(pid))
        (tmp_path / f"{WORK_PREFIX}unowned").mkdir()  # being created: no owner file yet
        assert remove_dead_drills(tmp_path) == [tmp_path / f"{WORK_PREFIX}dead"]
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            f"{WORK_PREFIX}{n}" for n in ("live", "mine", "unowned")]
    finally:
        living.kill()
        living.wait()


def test_the_throwaway_server_dies_with_a_worker_killed_with_9(tmp_path: Path) -> None:
    from workers.drill_server import dies_with_parent

    prefix = dies_with_parent()
    if not prefix:
        pytest.skip("no setpriv on this host")
    marker = f"{time.time_ns() % 10**9}.25"  # seconds to sleep: findable in ps
    worker = subprocess.Popen(  # stands in for the worker: starts the "server", waits
        [sys.executable, "-c", "import subprocess, sys, time; "
         f"subprocess.Popen({[*prefix, 'sleep', marker]!r}, start_new_session=True); "
         "time.sleep(600)"])
    try:
        deadline = time.monotonic() + 10
        while marker not in running_commands():
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
    finally:
        worker.kill()  # SIGKILL: no finally of the worker's runs
        worker.wait()
    deadline = time.monotonic() + 10
    while marker in running_commands():
        assert time.monotonic() < deadline, "the server outlived its worker"
        time.sleep(0.05)


def running_commands() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
