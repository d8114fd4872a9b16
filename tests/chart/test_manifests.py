"""What the rendered chart does for the people who run it.

Each test reads the manifests ``helm template`` renders, for the defaults and the value
sets in ``ci/``, and checks one promise of the chart: the worker runs ``stashq worker``
with the configured concurrency and queues and finishes its step before it is stopped;
no password reaches a command line or a manifest; every pod runs locked down; each
component gets only the API verbs it uses, exactly as README.md lists them; autoscaling
watches the real queue lists; Flower sits behind basic auth.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection

from tests.chart.helm import (
    CHART,
    NAMESPACE,
    RELEASE,
    Helm,
    Manifest,
    by_kind,
    component,
    pod_specs,
)

CI = CHART / "ci"
CI_FILES = sorted(CI.glob("*-values.yaml"))
VALUE_SETS = [[], *([p] for p in CI_FILES)]
VALUE_IDS = ["defaults", *(p.name.removesuffix("-values.yaml") for p in CI_FILES)]
PREFIX = f"{RELEASE}-stashq"


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in pod_specs(manifests).items():
        for container in spec["containers"] + spec.get("initContainers", []):
            yield f"{name}/{container['name']}", container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def container_of(manifests: list[Manifest], name: str) -> dict[str, Any]:
    return dict(pod_specs(manifests)[f"{PREFIX}-{name}"]["containers"][0])


# --- the worker -----------------------------------------------------------------------


def test_the_worker_runs_stashq_worker_against_the_kubernetes_store(helm: Helm) -> None:
    manifests = helm.template(set_values=["worker.concurrency=3",
                                          "pushgateway.url=http://pg.monitoring:9091"])
    worker = container_of(manifests, "worker")
    assert worker["args"] == ["stashq", "worker", "-c", "3", "-Q",
                              "stashq.data,stashq.control", "--loglevel", "INFO"]
    assert "command" not in worker  # the image's entrypoint (tini) runs the args
    env = env_of(worker)
    assert env["STASHQ_STORE"]["value"] == "kubernetes"
    assert env["STASHQ_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath":
                                                                 "metadata.namespace"}}
    assert env["STASHQ_PUSHGATEWAY_URL"]["value"] == "http://pg.monitoring:9091"
    assert env["STASHQ_BROKER_URL"]["value"] == \
        f"redis://:$(REDIS_PASSWORD)@{PREFIX}-redis:6379/0"
    assert env["STASHQ_REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{PREFIX}-redis:6379/1"


def test_a_stopped_worker_finishes_its_step_before_redis_would_hand_it_on(helm: Helm) -> None:
    manifests = helm.template()
    spec = pod_specs(manifests)[f"{PREFIX}-worker"]
    visibility_s = int(env_of(spec["containers"][0])["STASHQ_VISIBILITY_TIMEOUT_S"]["value"])
    assert 3600 <= spec["terminationGracePeriodSeconds"] < visibility_s
    pdb = component(manifests, "PodDisruptionBudget", "worker")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == \
        component(manifests, "Deployment", "worker")["spec"]["selector"]["matchLabels"]
    strategy = component(manifests, "Deployment", "worker")["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_keda_scales_the_pool_on_the_queue_lists_down_to_zero(helm: Helm) -> None:
    manifests = helm.template([CI / "keda-values.yaml"])
    deployment = component(manifests, "Deployment", "worker")
    assert "replicas" not in deployment["spec"]  # KEDA owns it
    scaled = component(manifests, "ScaledObject", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == ["stashq.data", "stashq.control"]
    for trigger in triggers:
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["databaseIndex"] == "0"  # the broker's db
        # KEDA's operator runs in its own namespace: the Service's full name.
        assert trigger["metadata"]["address"] == \
            f"{PREFIX}-redis.{NAMESPACE}.svc.cluster.local:6379"
        assert trigger["authenticationRef"]["name"] == f"{PREFIX}-worker"
    auth = component(manifests, "TriggerAuthentication", "worker")
    password = env_of(container_of(manifests, "worker"))["REDIS_PASSWORD"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", **password["valueFrom"]["secretKeyRef"]}]
    assert not by_kind(manifests, "HorizontalPodAutoscaler")


def test_the_hpa_scales_the_worker_deployment(helm: Helm) -> None:
    manifests = helm.template([CI / "hpa-values.yaml"])
    hpa = component(manifests, "HorizontalPodAutoscaler", "worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{PREFIX}-worker"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "replicas" not in component(manifests, "Deployment", "worker")["spec"]
    assert not by_kind(manifests, "ScaledObject")


# --- Redis and secrets ------------------------------------------------------------------


def test_external_redis_urls_are_what_celery_connects_to(helm: Helm) -> None:
    manifests = helm.template([CI / "external-redis-values.yaml"])
    env = env_of(container_of(manifests, "worker"))
    assert env["REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "stashq-redis", "key": "password"}}
    # The kubelet replaces $(REDIS_PASSWORD); a percent-encoded password as documented.
    url = env["STASHQ_BROKER_URL"]["value"].replace("$(REDIS_PASSWORD)", "p%40ss")
    connection: Any = Connection(url)  # type: ignore[no-untyped-call]
    assert (connection.transport_cls, connection.hostname, connection.port) == \
        ("rediss", "redis.data.svc.cluster.local", 6380)
    assert (connection.userid, connection.password) == ("stashq", "p@ss")
    assert connection.ssl["ssl_ca_certs"] == "/etc/stashq/redis-tls/ca.crt"
    assert connection.ssl["ssl_cert_reqs"].name == "CERT_REQUIRED"
    spec = pod_specs(manifests)[f"{PREFIX}-worker"]
    volume = next(v for v in spec["volumes"] if v["name"] == "redis-tls")
    assert volume["secret"]["secretName"] == "stashq-redis-ca"
    assert {"name": "redis-tls", "mountPath": "/etc/stashq/redis-tls", "readOnly": True} in \
        spec["containers"][0]["volumeMounts"]
    assert not by_kind(manifests, "Secret")  # the chart never holds that password
    assert f"{PREFIX}-redis" not in by_kind(manifests, "Deployment")


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=VALUE_IDS)
def test_no_password_reaches_a_command_line(helm: Helm, value_set: list[Path]) -> None:
    manifests = helm.template(value_set)
    for where, container in containers(manifests):
        argv = " ".join(container.get("command", []) + container.get("args", []))
        assert "$(REDIS_PASSWORD)" not in argv and "requirepass $(" not in argv, where
        names = [e["name"] for e in container.get("env", [])]
        for i, var in enumerate(container.get("env", [])):
            if re.search(r"PASSWORD|AUTH", var["name"]):
                assert "secretKeyRef" in var.get("valueFrom", {}), f"{where}: {var['name']}"
            if "$(REDIS_PASSWORD)" in var.get("value", ""):
                assert "REDIS_PASSWORD" in names[:i], f"{where}: {var['name']} before it"


def test_the_bundled_redis_gets_its_password_on_stdin(helm: Helm) -> None:
    manifests = helm.template()
    redis = container_of(manifests, "redis")
    assert redis["command"][:2] == ["sh", "-c"]
    assert "exec redis-server -" in redis["command"][2]
    assert "requirepass $REDIS_PASSWORD" in redis["command"][2]  # expanded by sh, not argv
    secret = component(manifests, "Secret", "redis")
    assert set(secret["data"]) == {"password"}
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["name"] == \
        secret["metadata"]["name"]


@pytest.mark.parametrize(("set_values", "appendonly"), [
    ([], "yes"),
    (["redis.bundled.auth.enabled=false"], "yes"),
    (["redis.bundled.persistence.enabled=false"], "no"),
    (["redis.bundled.persistence.enabled=false", "redis.bundled.auth.enabled=false"], "no"),
])
def test_the_bundled_redis_keeps_the_queue_on_a_claim_unless_told_not_to(
        helm: Helm, set_values: list[str], appendonly: str) -> None:
    manifests = helm.template(set_values=[*set_values, "redis.bundled.persistence.size=2Gi"])
    command = " ".join(container_of(manifests, "redis")["command"])
    assert f"--appendonly {appendonly}" in command.replace('--appendonly "', "--appendonly ")
    volumes = component(manifests, "Deployment", "redis")["spec"]["template"]["spec"]["volumes"]
    data = next(v for v in volumes if v["name"] == "data")
    claims = by_kind(manifests, "PersistentVolumeClaim")
    if appendonly == "yes":
        assert data == {"name": "data",
                        "persistentVolumeClaim": {"claimName": f"{PREFIX}-redis-data"}}
        assert claims[f"{PREFIX}-redis-data"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    else:
        assert "emptyDir" in data and claims == {}


# --- pods -------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=VALUE_IDS)
def test_every_pod_runs_locked_down(helm: Helm, value_set: list[Path]) -> None:
    manifests = helm.template(value_set)
    for name, spec in pod_specs(manifests).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
            assert container["resources"]["requests"], name


def test_scheduling_defaults_reach_every_pod_and_a_component_may_override(helm: Helm) -> None:
    manifests = helm.template([CI / "external-redis-values.yaml"])
    for name, spec in pod_specs(manifests).items():
        assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}, name
        assert spec["tolerations"][0]["value"] == "backup", name
    specs = pod_specs(manifests)
    assert "podAntiAffinity" in specs[f"{PREFIX}-worker"]["affinity"]
    assert "affinity" not in specs[f"{PREFIX}-beat"]


def test_extra_env_is_global_then_per_component(helm: Helm) -> None:
    manifests = helm.template([CI / "external-redis-values.yaml"])
    worker = env_of(container_of(manifests, "worker"))
    assert worker["STASHQ_PART_BYTES"]["value"] == "33554432"
    assert worker["STASHQ_ZSTD_LEVEL"]["value"] == "6"
    beat = env_of(container_of(manifests, "beat"))
    assert "STASHQ_PART_BYTES" in beat and "STASHQ_ZSTD_LEVEL" not in beat


def test_two_schedulers_with_a_budget_and_no_queue_access(helm: Helm) -> None:
    manifests = helm.template([CI / "external-redis-values.yaml"])
    beat = component(manifests, "Deployment", "beat")
    assert beat["spec"]["replicas"] == 2
    assert component(manifests, "PodDisruptionBudget", "beat")["spec"]["minAvailable"] == 1
    container = beat["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["stashq", "beat", "--starting-deadline", "600"]
    assert not {"REDIS_PASSWORD", "STASHQ_BROKER_URL"} & set(env_of(container))
    watcher = container_of(manifests, "watcher")
    assert watcher["args"] == ["stashq", "watch"]
    assert env_of(watcher)["STASHQ_STORE"]["value"] == "kubernetes"


# --- Flower -------------------------------------------------------------------------------


def test_flower_sits_behind_basic_auth_and_the_ingress(helm: Helm) -> None:
    manifests = helm.template([CI / "flower-ingress-values.yaml"])
    flower = container_of(manifests, "flower")
    assert flower["args"] == ["stashq", "flower", "--address=0.0.0.0", "--port=5555"]
    env = env_of(flower)
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"] == {
        "secretKeyRef": {"name": "stashq-flower-auth", "key": "auth"}}
    assert env["FLOWER_URL_PREFIX"]["value"] == "flower"
    assert env["FLOWER_READ_ONLY"]["value"] == "true"
    assert flower["readinessProbe"]["httpGet"]["path"] == "/flower/healthcheck"
    ingress = component(manifests, "Ingress", "flower")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "ops.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = component(manifests, "Service", "flower")
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert ingress["spec"]["tls"] == [{"hosts": ["ops.example.com"],
                                       "secretName": "ops-example-com-tls"}]
    pod = pod_specs(manifests)[f"{PREFIX}-flower"]
    assert pod["automountServiceAccountToken"] is False
    assert "STASHQ_STORE" not in env  # Flower reads the broker only


def test_flower_can_be_left_out(helm: Helm) -> None:
    manifests = helm.template(set_values=["flower.enabled=false"])
    assert not [m for m in manifests if m["metadata"]["name"] == f"{PREFIX}-flower"]


# --- RBAC -------------------------------------------------------------------------------

Grant = tuple[str, str, str, str]  # component, API group, resource, verb


def documented_grants() -> set[Grant]:
    """The table of charts/stashq/README.md, section "RBAC"."""
    text = (CHART / "README.md").read_text()
    section = text.split("## RBAC", 1)[1].split("\n## ", 1)[0]
    grants: set[Grant] = set()
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("component", "") or set(cells[0]) <= {"-", ":"}:
            continue
        who, group, resources, verbs = cells
        group = "" if group == "core" else group
        grants |= {(who, group, r.strip(), v.strip()) for r in resources.split(",")
                   for v in verbs.split(",")}
    return grants


def rendered_grants(manifests: list[Manifest]) -> set[Grant]:
    grants: set[Grant] = set()
    roles = by_kind(manifests, "ClusterRole") | by_kind(manifests, "Role")
    for role in roles.values():
        who = role["metadata"]["labels"].get("app.kubernetes.io/component")
        if who is None:
            continue  # the aggregated user roles
        grants |= {(who, group, resource, verb) for rule in role["rules"]
                   for group in rule["apiGroups"] for resource in rule["resources"]
                   for verb in rule["verbs"]}
    return grants


def test_each_component_gets_exactly_the_verbs_the_readme_lists(helm: Helm) -> None:
    manifests = helm.template()
    assert rendered_grants(manifests) == documented_grants()
    for grant in rendered_grants(manifests):
        assert "*" not in grant
    secrets = {g for g in rendered_grants(manifests) if g[2] == "secrets"}
    assert secrets == {("worker", "", "secrets", "get")}
    bindings = by_kind(manifests, "ClusterRoleBinding")
    for binding in bindings.values():
        subject = binding["subjects"][0]
        assert subject["namespace"] == NAMESPACE
        assert subject["name"] in by_kind(manifests, "ServiceAccount")
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]


def test_secrets_can_be_limited_to_named_namespaces(helm: Helm) -> None:
    manifests = helm.template([CI / "external-redis-values.yaml"])
    cluster_wide = by_kind(manifests, "ClusterRole")[f"{NAMESPACE}-{PREFIX}-worker"]
    assert all("secrets" not in rule["resources"] for rule in cluster_wide["rules"])
    roles = [m for m in manifests if m["kind"] == "Role"
             and not m["metadata"]["name"].endswith("-leases")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["billing", "shop"]
    assert all(r["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
               for r in roles)
    bindings = [m for m in manifests if m["kind"] == "RoleBinding"
                and not m["metadata"]["name"].endswith("-leases")]
    assert {b["subjects"][0]["name"] for b in bindings} == {f"{PREFIX}-worker"}


def test_locks_are_leases_in_the_release_namespace_only(helm: Helm) -> None:
    manifests = helm.template()
    roles = {n: r for n, r in by_kind(manifests, "Role").items() if n.endswith("-leases")}
    assert sorted(roles) == [f"{PREFIX}-beat-leases", f"{PREFIX}-worker-leases"]
    for name, role in roles.items():
        assert role["metadata"]["namespace"] == NAMESPACE
        binding = by_kind(manifests, "RoleBinding")[name]
        assert binding["metadata"]["namespace"] == NAMESPACE
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "namespace": NAMESPACE,
                                        "name": name.removesuffix("-leases")}]
    for who in ("worker", "beat", "watcher"):  # where every lock must be looked for
        env = env_of(container_of(manifests, who))
        assert env["STASHQ_LEASE_NAMESPACE"]["value"] == NAMESPACE


def test_users_who_may_edit_a_namespace_may_manage_backups_there(helm: Helm) -> None:
    roles = by_kind(helm.template(), "ClusterRole")
    edit = roles[f"{NAMESPACE}-{PREFIX}-edit"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "backupconfigurations" in edit["rules"][0]["resources"]
    view = roles[f"{NAMESPACE}-{PREFIX}-view"]
    assert view["rules"][0]["verbs"] == ["get", "list", "watch"]
