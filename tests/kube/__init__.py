"""The Kubernetes API for tests: a fake server on loopback (``server.py``) and how to
point the real client at it (``kubeconfig``)."""

from __future__ import annotations

from pathlib import Path

from tests.kube.server import FakeKubeAPI


def write_kubeconfig(path: Path, api: FakeKubeAPI) -> Path:
    """A kubeconfig naming the fake server over plain HTTP, as a file the client loads."""
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{api.url}"}}
users:
- name: tester
  user: {{token: not-checked}}
contexts:
- name: fake
  context: {{cluster: fake, user: tester, namespace: default}}
current-context: fake
""")
    return path


__all__ = ["FakeKubeAPI", "write_kubeconfig"]
