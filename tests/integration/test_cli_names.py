"""Sessions the CLI creates within one second still get names of their own."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import beat.cli
from tests.integration.resources import standard_setup
from workers.state.redis import RedisStore
from workflows.resources import RestoreSession


def test_two_restores_in_one_second_get_consecutive_names(
        redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"STASHQ_REDIS_URL": redis_url, "STASHQ_BROKER_URL": redis_url,
           "STASHQ_STORE": "redis", "STASHQ_NAMESPACE": "names"}
    runner = CliRunner()
    # Resources only (nothing connects: no worker takes the queued sessions).
    servers: Any = SimpleNamespace(port=1, endpoint="http://127.0.0.1:1", access_key="k",
                                   secret_key="s")
    setup = standard_setup(tmp_path / "setup.yaml", servers, servers, "bucket", "db")
    applied = runner.invoke(beat.cli.main, ["apply", "-f", str(setup)], env=env)
    assert applied.exit_code == 0, applied.output
    monkeypatch.setattr(beat.cli.time, "time", lambda: 1_800_000_000.25)
    outputs = [runner.invoke(beat.cli.main, ["restore", "--repository", "repo",
                                             "--target", "db"], env=env)
               for _ in range(2)]
    assert [r.exit_code for r in outputs] == [0, 0], [r.output for r in outputs]
    assert [r.output.strip() for r in outputs] == [
        "RestoreSession/restore-db-1800000000 created",
        "RestoreSession/restore-db-1800000001 created"]
    store = RedisStore.from_url(redis_url)
    assert {s.name for s in store.list(RestoreSession, "names")} == {
        "restore-db-1800000000", "restore-db-1800000001"}
