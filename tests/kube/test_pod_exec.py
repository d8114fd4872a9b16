"""Which pod an exec hook runs in, and what a hook that names a pod does without the
Kubernetes store. (The exec stream itself needs a real API server: the fake one in
tests/kube/server.py does not speak its WebSocket protocol.)"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from kubernetes import client

from workers.hooks.call import HookCall
from workers.hooks.command import run_command
from workers.state.kube_exec import pick_pod
from workflows.errors import HookFailed
from workflows.resources.hooks import HookAction, PodSelector


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
        run_command(object(), action, call, 5)
