"""`stashq apply` says what it did as kubectl does: created, configured or unchanged."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.integration.conftest import run_cli
from tests.integration.resources import standard_setup

KINDS = ["Secret/db-auth", "Secret/s3-auth", "AppBinding/db", "Repository/repo",
         "BackupConfiguration/nightly"]


def test_apply_reports_created_then_unchanged_then_configured(redis_url: str,
                                                              tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASHQ_")}
    env |= {"STASHQ_REDIS_URL": redis_url, "STASHQ_BROKER_URL": redis_url,
            "STASHQ_NAMESPACE": "apply"}
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
