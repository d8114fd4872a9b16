"""Fixtures for the chart tests and the metrics test: a real helm, found or installed
once per session, and promtool. Loaded for every test by ``tests/conftest.py``.

A tool that cannot be had (no registry reachable) skips these tests locally and fails
them in CI, like every other missing server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.chart.helm import Helm, find_or_install


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    try:
        binary = find_or_install()
    except (subprocess.CalledProcessError, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        message = f"helm is not installed and scripts/install_helm.sh failed: {e} " \
                  f"{detail.decode(errors='replace')[-500:]}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    yield Helm(binary, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' ``promtool`` (Debian's ``prometheus`` package, scripts/install.sh)."""
    binary = shutil.which("promtool")
    if binary is None:
        message = "promtool is not installed (apt-get install prometheus; scripts/install.sh)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    return binary
