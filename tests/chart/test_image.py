"""The container image, checked without building it (no container runtime here or in CI).

hadolint lints the Dockerfile and shellcheck the helm installer; the rest reads the
Dockerfile for what the chart relies on: the user the pods run as, the client tools the
steps spawn, an init process as PID 1, and a build context that holds the packages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, INSTALL_SCRIPT, ROOT

DOCKERFILE = ROOT / "Dockerfile"
#: Programs the steps look for on PATH (workers/engines), and the Debian package of each.
CLIENT_PACKAGES = {"mariadb-dump": "mariadb-client", "mariadb": "mariadb-client",
                   "mysqldump": "mariadb-client", "mysql": "mariadb-client",
                   "mariadb-backup": "mariadb-backup", "mbstream": "mariadb-backup",
                   "garbd": "galera-arbitrator-4"}


def tool(name: str) -> str:
    """A linter installed with the test extra; missing: skip locally, fail in CI."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        message = f"{name} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_finds_nothing_in_the_helm_installer() -> None:
    result = subprocess.run([tool("shellcheck"), str(INSTALL_SCRIPT)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_the_user_the_chart_expects() -> None:
    users = [args for name, args in instructions() if name == "USER"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    context = values["podSecurityContext"]
    assert users == [f"{context['runAsUser']}:{context['runAsGroup']}"]


def test_the_final_stage_has_the_clients_the_steps_spawn() -> None:
    stages = DOCKERFILE.read_text().split("\nFROM ")
    assert len(stages) == 3, "a build stage and a runtime stage"
    runtime = stages[-1]
    for program, package in CLIENT_PACKAGES.items():
        assert re.search(rf"\b{re.escape(package)}\b", runtime), f"{program} ({package})"
    assert '"/usr/bin/tini", "--"' in runtime  # PID 1 forwards SIGTERM, reaps children
    assert "COPY --from=build /opt/stashq /opt/stashq" in runtime


def test_the_build_context_holds_the_packages_and_nothing_else() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]
    assert patterns[0] == "**"
    kept = {p[1:] for p in patterns if p.startswith("!")}
    copied = {source.rstrip("/") for name, args in instructions()
              if name == "COPY" and "--from" not in args for source in args.split()[:-1]}
    assert copied <= kept | {"pyproject.toml", "README.md"}
    assert {"workflows", "workers", "beat", "pyproject.toml", "README.md"} <= kept
