"""Sessions the CLI creates within one second still get names of their own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import beat.cli
from devstack.resources import appbinding, secret
from workers.repository import Repository
from workers.state.redis import RedisStore
from workers.storage.local import LocalStorage
from workflows.resources import RestoreSession
from workflows.snapshots import Snapshot


def local_repository(path: Path) -> str:
    """Repository "repo" in directory ``path``, holding one (empty) snapshot of "nightly"."""
    now = datetime.now(UTC)
    Repository(LocalStorage(path), "repo").commit(Snapshot(
        id="nightly-1", session="nightly-1", repository="repo", engine="mariadb",
        server_version="10.11", target="db", configuration="nightly", databases=("shop",),
        streams=(), started_at=now, finished_at=now))
    return f"""apiVersion: stashq.io/v1alpha1
kind: Repository
metadata: {{name: repo}}
spec:
  backend:
    local: {{mountPath: "{path}"}}
"""


def test_two_restores_in_one_second_get_consecutive_names(
        redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {"STASHQ_REDIS_URL": redis_url, "STASHQ_BROKER_URL": redis_url,
           "STASHQ_STORE": "redis", "STASHQ_NAMESPACE": "names"}
    runner = CliRunner()
    # Resources only (nothing connects: no worker takes the queued sessions).
    server: Any = SimpleNamespace(port=1)
    setup = tmp_path / "setup.yaml"
    setup.write_text("---\n".join([secret("db-auth", username="root", password=""),
                                   appbinding("db", server, "db-auth"),
                                   local_repository(tmp_path / "repo")]))
    applied = runner.invoke(beat.cli.main, ["apply", "-f", str(setup)], env=env)
    assert applied.exit_code == 0, applied.output
    monkeypatch.setattr(beat.cli.time, "time", lambda: 1_800_000_000.25)
    outputs = [runner.invoke(beat.cli.main, ["restore", "--repository", "repo",
                                             "--target", "db"], env=env)
               for _ in range(2)]
    assert [r.exit_code for r in outputs] == [0, 0], [r.output for r in outputs]
    assert [r.output.splitlines()[-1] for r in outputs] == [
        "RestoreSession/restore-db-1800000000 created",
        "RestoreSession/restore-db-1800000001 created"]
    store = RedisStore.from_url(redis_url)
    assert {s.name for s in store.list(RestoreSession, "names")} == {
        "restore-db-1800000000", "restore-db-1800000001"}
