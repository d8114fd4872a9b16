"""The checks a platform team runs before letting the chart into a cluster, offline.

- ``helm lint --strict`` passes for the defaults and every value set in ``ci/``.
- Every object ``helm template`` renders from those is valid against the Kubernetes
  schemas of the oldest supported version (1.29, ``kubeVersion`` in Chart.yaml) and the
  newest one kubernetes-validate knows (1.37), in strict mode (an unknown field fails);
  KEDA's objects and the PrometheusRule against hand-written schemas (``schemas/``),
  since no Kubernetes release knows them; the CRDs that ``--include-crds`` adds as
  ``apiextensions.k8s.io/v1`` objects with well-formed OpenAPI schemas.
- A bad values file fails ``helm template`` and ``helm lint`` with the schema's message,
  and values that only make sense together fail with the chart's own sentence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.chart.helm import CHART, Helm, Manifest

CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = [None, *CI_FILES]
VALUE_IDS = ["defaults", *(p.name.removesuffix("-values.yaml") for p in CI_FILES)]
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
#: whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
SCHEMAS = Path(__file__).parent / "schemas"
#: Objects of API groups Kubernetes does not serve, checked against our own schemas.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication"),
                ("monitoring.coreos.com/v1", "PrometheusRule")}


def values(path: Path | None) -> list[Path]:
    return [] if path is None else [path]


def custom_schema(manifest: Manifest) -> dict[str, Any]:
    group = manifest["apiVersion"].replace("/", "_")
    return dict(json.loads((SCHEMAS / f"{group}_{manifest['kind']}.json").read_text()))


def validate(manifest: Manifest, version: str) -> None:
    if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_KINDS:
        jsonschema.validate(manifest, custom_schema(manifest))
    else:
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=VALUE_IDS)
def test_helm_lint_passes(helm: Helm, value_set: Path | None) -> None:
    output = helm.lint(values(value_set))
    assert "0 chart(s) failed" in output


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS, ids=VALUE_IDS)
def test_every_rendered_object_is_valid(helm: Helm, value_set: Path | None,
                                        version: str) -> None:
    manifests = helm.template(values(value_set))
    assert len(manifests) >= 10
    for manifest in manifests:
        try:
            validate(manifest, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as e:
            raise AssertionError(f"{manifest['kind']} {manifest['metadata']['name']} is "
                                 f"invalid for Kubernetes {version}: {e}") from e


def test_the_custom_schemas_reject_what_keda_would(helm: Helm) -> None:
    """The hand-written KEDA schemas are not vacuous: a trigger without its list fails."""
    manifests = helm.template(set_values=["worker.autoscaling.keda.enabled=true"])
    scaled = next(m for m in manifests if m["kind"] == "ScaledObject")
    validate(scaled, KUBERNETES_VERSIONS[-1])
    del scaled["spec"]["triggers"][0]["metadata"]["listName"]
    with pytest.raises(jsonschema.ValidationError, match="listName"):
        validate(scaled, KUBERNETES_VERSIONS[-1])
    scaled["spec"]["minReplicas"] = 0  # an HPA field, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled, KUBERNETES_VERSIONS[-1])


def test_the_crds_install_with_the_chart_and_are_valid(helm: Helm) -> None:
    manifests = helm.template(include_crds=True)
    crds = [m for m in manifests if m["kind"] == "CustomResourceDefinition"]
    names = {crd["metadata"]["name"] for crd in crds}
    assert names == {f"{p}.stashq.io" for p in ("repositories", "backupconfigurations",
                                                 "backupsessions", "restoresessions",
                                                 "tasks", "functions", "hooktemplates",
                                                 "restoredrills")} | \
        {"appbindings.appcatalog.appscode.com"}
    for crd in crds:
        kubernetes_validate.validate(crd, KUBERNETES_VERSIONS[-1], strict=True)
        for version in crd["spec"]["versions"]:
            jsonschema.Draft7Validator.check_schema(version["schema"]["openAPIV3Schema"])


# --- bad values -----------------------------------------------------------------------

SCHEMA_ERRORS = [
    ("worker:\n  concurrency: 0\n", "at '/worker/concurrency': minimum: got 0, want 1"),
    ("worker:\n  replicas: two\n", "at '/worker/replicas': got string, want integer"),
    ("worker:\n  replica: 3\n", "at '/worker': additional properties 'replica' not allowed"),
    ("worker:\n  queues: []\n", "at '/worker/queues': minItems"),
    ("redis:\n  external:\n    tls:\n      certReqs: maybe\n",
     "at '/redis/external/tls/certReqs': value must be one of 'required', 'optional', 'none'"),
    ("redis:\n  external:\n    port: 70000\n", "at '/redis/external/port': maximum"),
    ("flower:\n  ingress:\n    pathType: Anything\n", "at '/flower/ingress/pathType'"),
    ("image:\n  digest: latest\n", "at '/image/digest'"),
    ("pushgateway:\n  url: pushgateway:9091\n", "at '/pushgateway/url'"),
    ("extraEnv:\n  - value: x\n", "missing property 'name'"),
]


@pytest.mark.parametrize("text, message", SCHEMA_ERRORS, ids=[m for _, m in SCHEMA_ERRORS])
def test_a_bad_values_file_fails_with_the_schema_message(helm: Helm, tmp_path: Path,
                                                         text: str, message: str) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(text)
    error = helm.template_error([bad])
    assert "values don't meet the specifications of the schema" in error
    assert message in error
    lint = helm.run("lint", str(CHART), "--values", str(bad))
    assert lint.returncode != 0 and message in lint.stdout + lint.stderr


CROSS_FIELD_ERRORS = [
    (["worker.autoscaling.keda.enabled=true", "worker.autoscaling.hpa.enabled=true"],
     "enable keda or hpa, not both"),
    (["redis.bundled.enabled=false"],
     "redis.external.host is required when redis.bundled.enabled is false"),
    (["redis.external.host=redis.example"], "set redis.bundled.enabled=false"),
    (["flower.ingress.enabled=true", "flower.ingress.host=f.example.com"],
     "flower.ingress.enabled needs flower.basicAuth.secretName"),
    (["worker.terminationGracePeriodSeconds=50000"],
     "worker.terminationGracePeriodSeconds (50000) must be below "
     "settings.visibilityTimeoutSeconds (43200)"),
    (["worker.autoscaling.keda.enabled=true", "worker.autoscaling.keda.minReplicaCount=5",
      "worker.autoscaling.keda.maxReplicaCount=2"], "minReplicaCount must not exceed"),
]


@pytest.mark.parametrize("settings, message", CROSS_FIELD_ERRORS,
                         ids=[m for _, m in CROSS_FIELD_ERRORS])
def test_values_that_contradict_each_other_fail_with_a_sentence(
        helm: Helm, settings: list[str], message: str) -> None:
    assert message in helm.template_error(set_values=settings)
