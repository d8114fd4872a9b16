"""The way from `make demo` to the README's "Using it", as written: the demo script
runs with whatever Python the user types, and the env file it (or `python -m
devstack.servers up`) writes puts `stashq` on PATH."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devstack.servers.__main__ import write_env

ROOT = Path(__file__).resolve().parents[2]
#: The Python the virtualenv was made from: none of StashQ's dependencies installed.
PLAIN_PYTHON = Path(sys.base_prefix) / "bin" / "python3"


def test_sourcing_the_env_file_puts_stashq_on_path(tmp_path: Path) -> None:
    env_path = write_env(tmp_path)
    found = subprocess.run(["bash", "-c", f"source {env_path} && command -v stashq"],
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(Path(sys.executable).with_name("stashq"))


def test_the_demo_script_runs_with_a_python_without_the_dependencies() -> None:
    result = subprocess.run([str(PLAIN_PYTHON), str(ROOT / "scripts" / "demo.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--keep" in result.stdout
