"""`stashq apply` says what it did as kubectl does: created, configured or unchanged."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from devstack.resources import standard_setup
from devstack.stack import run_cli
from workers.state.redis import RedisStore
from workflows.resources import AppBinding, Secret

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["Secret/db-auth", "Secret/s3-auth", "AppBinding/db", "Repository/repo",
         "BackupConfiguration/nightly"]


def cli_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    return env | {"STASHQ_REDIS_URL": redis_url, "STASHQ_BROKER_URL": redis_url,
                  "STASHQ_NAMESPACE": "apply"}


def test_apply_reports_created_then_unchanged_then_configured(redis_url: str,
                                                              tmp_path: Path) -> None:
    env = cli_env(redis_url)
    servers: Any = SimpleNamespace(port=1, endpoint="http://127.0.0.1:1", access_key="k",
                                   secret_key="s")  # applied, never connected to
    setup = standard_setup(tmp_path / "setup.yaml", servers, servers, "bucket", "db")

    def apply() -> list[str]:
        return run_cli(env, "apply", "-f", str(setup), check=True).stdout.splitlines()

    assert apply() == [f"{kind} created" for kind in KINDS]
    assert apply() == [f"{kind} unchanged" for kind in KINDS]
    setup.write_text(setup.read_text().replace('schedule: "0 3 * * *"',
                                               'schedule: "0 4 * * *"')
                     .replace('password: ""', 'password: "changed"'))
    assert apply() == ["Secret/db-auth configured", "Secret/s3-auth unchanged",
                       "AppBinding/db unchanged", "Repository/repo unchanged",
                       "BackupConfiguration/nightly configured"]


def test_an_instant_backup_manifest_makes_a_new_session_each_time(redis_url: str) -> None:
    env = cli_env(redis_url)  # resources only: no worker takes the queued sessions
    run_cli(env, "apply", "-f", str(ROOT / "examples/mariadb/backup"), check=True)
    instant = str(ROOT / "examples/mariadb/instant-backup.yaml")
    lines = [run_cli(env, "apply", "-f", instant, check=True).stdout.strip() for _ in range(2)]
    for line in lines:
        assert re.fullmatch(r"BackupSession/sample-mariadb-backup-manual-"
                            r"[bcdfghjklmnpqrstvwxz2456789]{5} created", line), lines
    assert lines[0] != lines[1]


def test_every_invalid_resource_is_named_and_nothing_is_applied(redis_url: str,
                                                                tmp_path: Path) -> None:
    env = cli_env(redis_url)
    servers: Any = SimpleNamespace(port=1, endpoint="http://127.0.0.1:1", access_key="k",
                                   secret_key="s")
    setup = standard_setup(tmp_path / "setup.yaml", servers, servers, "bucket", "db")
    setup.write_text(setup.read_text()
                     .replace("kind: Repository\nmetadata: {name: repo}",
                              "kind: Repository\nmetadata: {name: repo}\nspce: {}")
                     .replace('schedule: "0 3 * * *"', 'schedul: "0 3 * * *"'))
    result = run_cli(env, "apply", "-f", str(setup))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "error: 2 resources are invalid; nothing was applied:"
    assert re.fullmatch(r'  .*setup\.yaml#3: Repository "repo": spce: is not a known field '
                        r'\(did you mean "spec"\?\)', lines[1]), lines
    assert re.fullmatch(r'  .*setup\.yaml#4: BackupConfiguration "nightly": spec\.schedul: is '
                        r'not a known field \(did you mean "schedule"\?\)', lines[2]), lines
    assert len(lines) == 3  # the broken Repository is in the file: not "does not exist" too
    store = RedisStore.from_url(redis_url)
    assert store.list(Secret, "apply") == [] and store.list(AppBinding, "apply") == []
