"""Dump and restore command lines per flavor, and where the credentials go."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from workers.engines import ConnectionInfo, ServerInfo, engine_for
from workers.engines.base import defaults_file
from workflows.errors import PrecheckFailed
from workflows.resources import Engine

CONN = ConnectionInfo(host="db.example", port=3307, user="backup", password='p"a\\ss w0rd')


@pytest.mark.parametrize("engine", list(Engine))
def test_dump_is_consistent_and_carries_no_credentials(engine: Engine) -> None:
    adapter = engine_for(engine)
    try:
        argv = adapter.dump_args(Path("/tmp/x.cnf"), ["shop", "-odd name`"], ["--skip-dump-date"])
    except PrecheckFailed as e:  # no such client on this machine: a setup problem in CI
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    assert argv[1] == "--defaults-file=/tmp/x.cnf"
    for option in ("--single-transaction", "--quick", "--routines", "--events", "--triggers",
                   "--hex-blob"):
        assert option in argv
    assert argv[-3:] == ["--", "shop", "-odd name`"]
    assert "--databases" in argv and "--skip-dump-date" in argv
    assert not any("w0rd" in a or a == "backup" for a in argv)


def test_one_database_dump_can_be_renamed_on_restore() -> None:
    adapter = engine_for(Engine.MARIADB)
    argv = adapter.dump_args(Path("/c.cnf"), ["shop"], [])
    assert "--databases" not in argv and argv[-2:] == ["--", "shop"]
    restore = adapter.restore_args(Path("/c.cnf"), "shop_copy", [])
    assert restore[-1] == "--database=shop_copy"


def test_flavor_compatibility() -> None:
    mariadb = ServerInfo(Engine.MARIADB, "10.11.19", "10.11.19-MariaDB")
    percona = ServerInfo(Engine.PERCONA_XTRADB, "8.0.36", "8.0.36-28 Percona Server")
    assert engine_for(Engine.MARIADB).accepts(mariadb)
    assert not engine_for(Engine.MYSQL).accepts(mariadb)
    assert engine_for(Engine.MYSQL).accepts(percona)
    assert engine_for(Engine.PERCONA_XTRADB).accepts(percona)


def test_defaults_file_is_private_in_memory_and_removed() -> None:
    with defaults_file(CONN) as path:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        text = path.read_text()
        assert mode == 0o600
        assert os.readlink(path).startswith("/memfd:stashq-client.cnf")  # on no disk
        assert path.read_text() == text  # each open reads from the start (clients re-read)
        assert 'password="p\\"a\\\\ss w0rd"' in text
        assert "port=3307" in text
    assert not path.exists()
    assert "w0rd" not in repr(CONN) and "w0rd" not in str(CONN)
