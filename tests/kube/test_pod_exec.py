"""Exec hooks in a pod, through the official client and the exec WebSocket of the fake
API server (tests/kube/pod_exec.py): which pod and container, the output and exit code,
a command that hangs without a word stopped at its timeout, a pod or container that is
not there named in the error; and what a hook that names a pod does without the
Kubernetes store."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.kube import FakeKubeAPI
from workers.hooks.call import HookCall
from workers.hooks.command import run_command
from workers.state import open_store
from workers.state.kube import KubeStore
from workers.state.kube_exec import pick_pod
from workers.state.redis import RedisStore
from workflows.errors import HookFailed
from workflows.resources.hooks import HookAction, PodSelector
from workflows.settings import Settings


def pod(name: str, phase: str, ready: bool) -> client.V1Pod:
    condition = client.V1PodCondition(type="Ready", status="True" if ready else "False")
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name),
                        status=client.V1PodStatus(phase=phase, conditions=[condition]))


@dataclass
class Core:
    pods: list[client.V1Pod]
    asked: list[str] = field(default_factory=list)

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> client.V1PodList:
        self.asked.append(label_selector)
        return client.V1PodList(items=self.pods)


def test_a_pod_named_is_that_pod_and_labels_choose_the_first_ready_one() -> None:
    core = Core([pod("db-2", "Running", True), pod("db-0", "Pending", False),
                 pod("db-1", "Running", True), pod("db-3", "Running", False)])
    assert pick_pod(core, "shop", PodSelector(name="db-9")) == "db-9"  # type: ignore[arg-type]
    chosen = pick_pod(core, "shop",  # type: ignore[arg-type]
                      PodSelector(match_labels={"app": "db", "role": "primary"}))
    assert chosen == "db-1"
    assert core.asked == ["app=db,role=primary"]


def test_no_ready_pod_is_a_hook_failure_saying_so() -> None:
    core = Core([pod("db-0", "Running", False)])
    with pytest.raises(HookFailed, match=r'no Running and Ready pod in namespace "shop" '
                                         r"matches app=db \(1 match but are not ready\)"):
        pick_pod(core, "shop", PodSelector(match_labels={"app": "db"}))  # type: ignore[arg-type]


def test_an_exec_in_a_pod_without_the_kubernetes_store_fails_saying_why() -> None:
    action = HookAction.model_validate({"exec": {"command": ["true"]},
                                        "pod": {"name": "db-0"}})
    call = HookCall("s", "shop", "BackupSession", "preBackup", "Running")
    with pytest.raises(HookFailed, match="exec in a pod needs the Kubernetes store"):
        # the Redis store refuses before it would talk to its server: none is needed
        run_command(RedisStore.from_url("redis://127.0.0.1:1/0"), action, call, 5)


CALL = HookCall("nightly-1", "shop", "BackupSession", "preBackup", "Running")


@pytest.fixture
def store(kubeconfig: Path) -> KubeStore:
    store = open_store(Settings(store="kubernetes", kubeconfig=str(kubeconfig)))
    assert isinstance(store, KubeStore)
    return store


def add_pod(api: FakeKubeAPI, name: str, *, ready: bool = True,
            containers: tuple[str, ...] = ("mariadb",), **labels: str) -> None:
    api.create({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": labels},
                "spec": {"containers": [{"name": c, "env": [{"name": "IN", "value": c}]}
                                        for c in containers]},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True" if ready else "False"}]}})


def exec_action(command: list[str], **where: Any) -> HookAction:
    return HookAction.model_validate({"exec": {"command": command}, **where})


def test_a_command_runs_in_the_pod_and_container_named_or_chosen_by_labels(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    add_pod(kube_api, "db-0", containers=("mariadb", "exporter"), app="db")
    add_pod(kube_api, "db-1", ready=False, app="db")
    add_pod(kube_api, "web-0", app="web")
    script = ["/bin/sh", "-c", 'echo "in $IN"; echo warned >&2']
    output = run_command(store, exec_action(script, pod={"name": "db-0"},
                                            containerName="exporter"), CALL, 30)
    assert sorted(output.splitlines()) == ["in exporter", "warned"]  # stdout and stderr
    output = run_command(store, exec_action(script, pod={"matchLabels": {"app": "db"}},
                                            containerName="mariadb"), CALL, 30)
    assert "in mariadb" in output
    assert [(pod, container) for _, pod, container, _ in kube_api.execs] == [
        ("db-0", "exporter"), ("db-0", "mariadb")]  # db-1 is not ready, web-0 not a match
    assert kube_api.execs[0][3] == script


def test_a_command_that_fails_in_the_pod_fails_the_hook_with_its_code_and_last_line(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    add_pod(kube_api, "db-0")
    with pytest.raises(HookFailed, match=r"^sh exited with code 3: table locked$"):
        run_command(store, exec_action(["sh", "-c", "echo checking; echo table locked; exit 3"],
                                       pod={"name": "db-0"}), CALL, 30)


def test_a_command_that_prints_nothing_and_hangs_is_stopped_at_its_timeout(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    add_pod(kube_api, "db-0")
    marker = f"{time.time_ns() % 10**9}.5"  # seconds to sleep: unique, so findable
    started = time.monotonic()
    with pytest.raises(HookFailed, match=r'sleep in pod "db-0" timed out after 2 s'):
        run_command(store, exec_action(["sleep", marker], pod={"name": "db-0"}), CALL, 2)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10  # the stream's close reaches the "container"
    while marker in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                   text=True).stdout:
        assert time.monotonic() < deadline, "the command still runs"
        time.sleep(0.2)


def test_a_pod_or_container_that_is_not_there_is_named_in_the_error(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    add_pod(kube_api, "db-0")
    with pytest.raises(HookFailed, match=r'exec in pod "db-9" \(namespace "shop"\) refused: '
                                         r'404 pods "db-9" not found'):
        run_command(store, exec_action(["true"], pod={"name": "db-9"}), CALL, 30)
    with pytest.raises(HookFailed, match=r'exec in pod "db-0" container "sidecar" \(namespace '
                                         r'"shop"\) refused: 400 container sidecar is not '
                                         r"valid for pod db-0"):
        run_command(store, exec_action(["true"], pod={"name": "db-0"},
                                       containerName="sidecar"), CALL, 30)
    with pytest.raises(HookFailed, match=r'no Running and Ready pod in namespace "shop" '
                                         r"matches app=gone \(0 match"):
        run_command(store, exec_action(["true"], pod={"matchLabels": {"app": "gone"}}), CALL, 30)
    assert kube_api.execs == []
