"""The README's Kubernetes section, copied command by command, works: the namespace
the examples use is created first, `stashq` is pointed at the cluster before it runs,
and `kubectl get` is documented with the columns the CRDs really print."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "stashq" / "crds"


def kubernetes_commands() -> list[str]:
    """The lines of the shell blocks of the README's "## Kubernetes" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Kubernetes\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def printer_columns(short_name: str) -> list[str]:
    for path in CRDS.glob("stashq.io_*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if short_name in crd["spec"]["names"].get("shortNames", []):
            return [c["name"].lower() for c in
                    crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    raise AssertionError(f"no CRD is called {short_name}")


def example_namespaces() -> set[str]:
    return {doc["metadata"]["namespace"] for path in (ROOT / "examples").rglob("*.yaml")
            if "demo" not in path.parts[-2:-1]
            for doc in yaml.safe_load_all(path.read_text()) if doc}


def test_kubectl_get_is_documented_with_the_crds_columns() -> None:
    for line in kubernetes_commands():
        if match := re.match(r"kubectl get (\w+) .*# (.*)$", line):
            documented = [c.strip() for c in match.group(2).split(",")]
            assert documented == printer_columns(match.group(1)), line


def test_the_examples_namespace_is_created_before_anything_is_applied() -> None:
    commands = kubernetes_commands()
    first_apply = next(i for i, c in enumerate(commands) if "-f examples/" in c)
    for namespace in example_namespaces():
        assert any(re.match(rf"kubectl create namespace {namespace}\b", c)
                   for c in commands[:first_apply]), namespace


def test_stashq_is_pointed_at_the_cluster_before_it_runs() -> None:
    commands = kubernetes_commands()
    first = next(i for i, c in enumerate(commands) if c.startswith("stashq "))
    assert "export STASHQ_STORE=kubernetes" in [c.split("#")[0].strip()
                                                for c in commands[:first]]
