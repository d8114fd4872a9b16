"""The CRDs and every example, validated offline as a cluster would validate them.

- The CRD files are what ``scripts/gen_crds.py`` makes of the models today.
- Each CRD is a valid ``apiextensions.k8s.io/v1`` object (kubernetes-validate, the
  Kubernetes 1.37 schemas) and its schema is *structural*, or the API server refuses it.
- Every example and built-in Task/Function: built-in kinds against Kubernetes' schemas,
  our kinds against their CRD's schema (with unknown fields rejected, as kubectl's
  default strict field validation does), and all of them through ``parse_resource``.
- A table of bad specs that both the schema and the parser reject, and the few checks
  only the parser can make (the watcher and scheduler report those in the status).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from beat.apply import completed_metadata
from workflows.catalog import STEP_LISTS, task_documents
from workflows.errors import InvalidResource
from workflows.manifests import load_manifests
from workflows.parsing import parse_resource

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "stashq" / "crds"
KUBERNETES_VERSION = "1.37.0"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
#: kubernetes-validate knows: CRDs and the Events we write are checked against both.
KUBERNETES_VERSIONS = ("1.29.0", KUBERNETES_VERSION)
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
CATALOG = sorted((ROOT / "workflows" / "catalog").glob("*.yaml"))
#: Keywords a structural schema may not hold under allOf/anyOf/oneOf/not.
NOT_IN_JUNCTORS = ("type", "additionalProperties", "description", "default", "nullable",
                   "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
                   "x-kubernetes-embedded-resource")
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def _gen_crds() -> Any:
    spec = importlib.util.spec_from_file_location("gen_crds", ROOT / "scripts" / "gen_crds.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted(CRD_DIR.glob("*.yaml"))]


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    group, _, version = api_version.rpartition("/")
    for crd in crds():
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            served = [v for v in crd["spec"]["versions"] if v["name"] == version]
            assert served, f"{crd['metadata']['name']} does not serve {version}"
            return dict(served[0]["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {api_version} {kind}")


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected (kubectl's default: field validation
    Strict), except where the CRD keeps unknown fields on purpose."""
    out = copy.deepcopy(schema)
    stack = [out]
    while stack:
        node = stack.pop()
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        stack += list(node.get("properties", {}).values())
        stack += [node[k] for k in ("items", "additionalProperties", "not")
                  if isinstance(node.get(k), dict)]
        stack += [s for k in ("allOf", "anyOf", "oneOf") for s in node.get(k, [])]
    return out


def schema_errors(raw: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(strict(schema_for(raw["apiVersion"], raw["kind"])))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(raw)]


def structural_problems(node: dict[str, Any], path: str, *, in_junctor: bool = False,
                        root: bool = False) -> list[str]:
    """Why the API server would call this schema non-structural (empty: it would not)."""
    problems = []
    for word in ("$ref", "$defs", "definitions", "const"):
        if word in node:
            problems.append(f"{path}: {word} is not allowed")
    if in_junctor:
        problems += [f"{path}: {w} inside a junctor" for w in NOT_IN_JUNCTORS if w in node]
    elif not node.get("type") and not node.get("x-kubernetes-int-or-string") and not (
            node.get("x-kubernetes-preserve-unknown-fields") and root):
        problems.append(f"{path}: no type")
    if isinstance(node.get("additionalProperties"), bool):
        problems.append(f"{path}: additionalProperties must be a schema")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties together")
    for key, child in node.get("properties", {}).items():
        problems += structural_problems(child, f"{path}.{key}", in_junctor=in_junctor)
    for word in ("items", "additionalProperties"):
        if isinstance(node.get(word), dict):
            problems += structural_problems(node[word], f"{path}.{word}", in_junctor=in_junctor)
    for word in JUNCTORS:
        for child in ([node[word]] if word == "not" and word in node else node.get(word, [])):
            problems += structural_problems(child, f"{path}.{word}", in_junctor=True)
    return problems


def documents(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """Every document; the catalog's step lists as the Tasks they expand to."""
    return [item for path in paths for item in (
        task_documents(load_manifests(path)) if path.name == STEP_LISTS
        and path.parent.name == "catalog" else load_manifests(path))]


# --- the CRDs -------------------------------------------------------------------------


def test_the_committed_crds_are_what_the_models_generate() -> None:
    gen = _gen_crds()
    for path, text in gen.render().items():
        assert path.exists(), f"{path.name} is missing: run scripts/gen_crds.py"
        assert path.read_text() == text, f"{path.name} is out of date: run scripts/gen_crds.py"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("crd", crds(), ids=lambda c: c["metadata"]["name"])
def test_each_crd_is_valid_and_structural(crd: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(crd, version, strict=True)
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert structural_problems(schema, "openAPIV3Schema") == []
        assert schema["properties"]["metadata"] == {"type": "object"}
        columns = {c["name"] for c in version["additionalPrinterColumns"]}
        assert "Age" in columns
    if crd["spec"]["group"] == "stashq.io":
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["names"]["categories"] == ["stashq"]


def test_printer_columns_show_phase_schedule_and_last_backup() -> None:
    columns = {c["spec"]["names"]["kind"]: [col["name"] for col in
                                            c["spec"]["versions"][0]["additionalPrinterColumns"]]
               for c in crds()}
    assert columns["BackupConfiguration"] == ["Task", "Schedule", "Paused", "Phase",
                                              "Last backup", "Result", "Snapshot", "Next",
                                              "Age"]
    assert columns["BackupSession"] == ["Invoker", "Phase", "Duration", "Age"]
    assert columns["RestoreSession"] == ["Repository", "Phase", "Duration", "Age"]
    assert columns["Repository"] == ["Snapshots", "Size", "Last backup", "Age"]
    short = {c["spec"]["names"]["kind"]: c["spec"]["names"].get("shortNames") for c in crds()}
    assert short["BackupConfiguration"] == ["bc"] and short["BackupSession"] == ["bs"]


def printer_columns(kind: str) -> list[dict[str, Any]]:
    [crd] = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    columns: list[dict[str, Any]] = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    return columns


def test_the_configuration_columns_read_what_its_status_holds_after_a_backup() -> None:
    from workflows.phases import last_backup, succeeded

    session = succeeded(now=1_767_225_600.0, seconds=2.0) | {"snapshot": {"name": "n-1"}}
    status = {"phase": "Ready", "nextScheduleTime": "2026-01-02T03:00:00Z",
              "lastBackup": last_backup("n-1", session)}
    shown = {c["name"]: json_path(status, c["jsonPath"]) for c in
             printer_columns("BackupConfiguration") if c["jsonPath"].startswith(".status.")}
    assert shown == {"Phase": "Ready", "Last backup": "2026-01-01T00:00:00.000Z",
                     "Result": "Succeeded", "Snapshot": "n-1", "Next": "2026-01-02T03:00:00Z"}


def json_path(status: dict[str, Any], path: str) -> Any:
    """``.status.a.b`` of an object whose status is ``status``, as kubectl reads it."""
    value: Any = {"status": status}
    for key in path.lstrip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_events_we_write_are_valid_core_v1_events(version: str) -> None:
    from workflows.events import event_body, transition_events
    from workflows.phases import failed

    involved = {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
                "metadata": {"name": "n-1", "namespace": "demo", "uid": "u",
                             "resourceVersion": "1"}}
    [fields] = transition_events("BackupSession", failed("gone", now=1.0), {})
    kubernetes_validate.validate(event_body(involved, fields, now=1.0, instance="w"), version,
                                 strict=True)


def test_the_structural_check_can_tell() -> None:
    bad = {"type": "object", "properties": {
        "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "b": {"$ref": "#/$defs/B"},
        "c": {"type": "object", "additionalProperties": False},
        "d": {"type": "string", "oneOf": [{"type": "string"}]}}}
    problems = structural_problems(bad, "s")
    assert any("s.a: no type" in p for p in problems)
    assert any("s.b: $ref" in p for p in problems)
    assert any("s.c: additionalProperties must be a schema" in p for p in problems)
    assert any("s.d.oneOf: type inside a junctor" in p for p in problems)


# --- every example and built-in -------------------------------------------------------


@pytest.mark.parametrize(("source", "raw"), documents([*EXAMPLES, *CATALOG]),
                         ids=lambda v: str(v).replace(str(ROOT) + "/", "")
                         if isinstance(v, str) else "")
def test_every_example_validates_and_parses(source: str, raw: dict[str, Any]) -> None:
    # As the API server (and stashq apply) completes it: namespace, generateName → name.
    raw = {**raw, "metadata": completed_metadata(raw["metadata"], "demo")}
    if "/" in raw["apiVersion"] and not raw["apiVersion"].startswith(("apps/", "batch/")):
        assert schema_errors(raw) == [], source
    else:
        kubernetes_validate.validate(raw, KUBERNETES_VERSION, strict=True)
    parse_resource(raw, source=source)


def test_there_is_an_example_of_each_flow_for_each_engine() -> None:
    for engine in ("mysql", "mariadb", "percona-xtradb"):
        kinds = [raw["kind"] for _, raw in documents(
            sorted((ROOT / "examples" / engine).rglob("*.yaml")))]
        for kind in ("Secret", "AppBinding", "Repository", "BackupConfiguration",
                     "BackupSession", "RestoreSession"):
            assert kind in kinds, f"examples/{engine} has no {kind}"


# --- what the schema rejects, and what only the parser can ---------------------------

REPOSITORY = {"apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
              "metadata": {"name": "repo", "namespace": "demo"},
              "spec": {"backend": {"s3": {"bucket": "backups", "prefix": "p"},
                                   "storageSecretName": "s3-secret"}}}
CONFIG = {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
          "metadata": {"name": "nightly", "namespace": "demo"},
          "spec": {"schedule": "0 3 * * *", "repository": {"name": "repo"},
                   "target": {"ref": {"name": "db"}},
                   "task": {"params": [{"name": "databases", "value": "shop"}]},
                   "retentionPolicy": {"keepLast": 5}, "retryConfig": {"maxRetry": 2}}}
SESSION = {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
           "metadata": {"name": "nightly-1", "namespace": "demo"},
           "spec": {"invoker": {"apiGroup": "stashq.io", "kind": "BackupConfiguration",
                                "name": "nightly"}}}
RESTORE = {"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
           "metadata": {"name": "r-1", "namespace": "demo"},
           "spec": {"repository": {"name": "repo"},
                    "target": {"ref": {"name": "db"}, "replicas": 1,
                               "rules": [{"snapshots": ["latest"]}]}}}
TASK = {"apiVersion": "stashq.io/v1alpha1", "kind": "Task",
        "metadata": {"name": "t", "namespace": "demo"},
        "spec": {"engine": "mariadb", "serverVersions": ">=10.3",
                 "steps": [{"name": "precheck"}]}}
FUNCTION = {"apiVersion": "stashq.io/v1alpha1", "kind": "Function",
            "metadata": {"name": "f", "namespace": "demo"},
            "spec": {"step": "stashq.precheck"}}


def changed(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``raw`` with the value at a dotted path (``[0]`` indexes) replaced; DELETE drops it."""
    out = copy.deepcopy(raw)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return out


DELETE = object()

BOTH_REJECT = [
    (REPOSITORY, "spec.backend.local", {"mountPath": "/backups"}),  # s3 and local
    (REPOSITORY, "spec.backend.s3", DELETE),  # neither
    (REPOSITORY, "spec.backend.storageSecretName", DELETE),  # s3 without its Secret
    (REPOSITORY, "spec.backend.s3.bucket", "ab"),
    (REPOSITORY, "spec.backend.gcs", {"bucket": "b"}),  # not a field we know
    (CONFIG, "spec.repository", DELETE),
    (CONFIG, "spec.target.ref.name", "Bad_Name"),
    (CONFIG, "spec.retentionPolicy.keepLast", -1),
    (CONFIG, "spec.retryConfig.maxRetry", 21),
    (CONFIG, "spec.backupHistoryLimit", -1),
    (CONFIG, "spec.task.params[0].name", ""),
    (CONFIG, "spec.schedul", "0 3 * * *"),
    (SESSION, "spec.invoker.kind", "CronJob"),
    (SESSION, "spec.invoker", DELETE),
    (RESTORE, "spec.target.replicas", 0),
    (RESTORE, "spec.target.rules", "latest"),
    (TASK, "spec.steps", []),
    (TASK, "spec.engine", "postgres"),
    (FUNCTION, "spec.step", "dump"),
]


@pytest.mark.parametrize(("base", "path", "value"), BOTH_REJECT,
                         ids=[f"{b['kind']}-{p}" for b, p, _ in BOTH_REJECT])
def test_the_schema_rejects_what_the_parser_rejects(base: dict[str, Any], path: str,
                                                   value: Any) -> None:
    assert schema_errors(base) == []
    parse_resource(base)
    bad = changed(base, path, value)
    assert schema_errors(bad) != []
    with pytest.raises(InvalidResource):
        parse_resource(bad)


#: Checks no OpenAPI schema can make: the parser makes them, and the watcher (sessions)
#: or the scheduler (configurations) writes the reason into the object's status.
PARSER_ONLY = [
    (CONFIG, "spec.schedule", "61 * * * *", "is not a cron expression"),
    (CONFIG, "spec.timeZone", "Mars/Olympus_Mons", "is not a known time zone"),
    (TASK, "spec.serverVersions", "newest", "is not a version specifier"),
]


@pytest.mark.parametrize(("base", "path", "value", "reason"), PARSER_ONLY,
                         ids=[p for _, p, _, _ in PARSER_ONLY])
def test_what_only_the_parser_can_check(base: dict[str, Any], path: str, value: Any,
                                        reason: str) -> None:
    bad = changed(base, path, value)
    assert schema_errors(bad) == []
    with pytest.raises(InvalidResource, match=reason):
        parse_resource(bad)
