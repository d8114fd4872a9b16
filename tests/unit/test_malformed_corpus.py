"""A corpus of malformed resources: each is rejected with the field path that is wrong,
and the error is the project's own (never a crash, never a silent default).

Hostile shapes (issue 19) too: duplicate keys, alias bombs, deep nesting and oversize
documents, as text through the one reader, and oversize or overdeep values in the fields
kept for compatibility with Stash, each refused quickly with its reason."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tests.support.hostile import HOSTILE, nested_value, shared_bomb
from workflows.bounds import MAX_COMPAT_BYTES, MAX_MANIFEST_BYTES
from workflows.errors import InvalidResource
from workflows.manifests import load_json, load_text
from workflows.parsing import parse_all, parse_resource

BASES: dict[str, dict[str, Any]] = {
    "Repository": {"apiVersion": "stashq.io/v1alpha1", "kind": "Repository",
                   "metadata": {"name": "repo"},
                   "spec": {"backend": {"s3": {"endpoint": "http://127.0.0.1:9000",
                                               "bucket": "backups", "prefix": "x"},
                                        "storageSecretName": "s3-auth"}}},
    "AppBinding": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
                   "metadata": {"name": "db"},
                   "spec": {"type": "kubedb.com/mysql", "secret": {"name": "auth"},
                            "clientConfig": {"url": "tcp(mysql.demo.svc:3306)/"}}},
    "BackupConfiguration": {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
                            "metadata": {"name": "nightly"},
                            "spec": {"schedule": "0 2 * * *", "repository": {"name": "repo"},
                                     "target": {"ref": {"name": "db"}},
                                     "retentionPolicy": {"keepLast": 3}}},
    "BackupSession": {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
                      "metadata": {"name": "nightly-1"},
                      "spec": {"invoker": {"name": "nightly"}}},
    "RestoreSession": {"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
                       "metadata": {"name": "restore-1"},
                       "spec": {"repository": {"name": "repo"},
                                "target": {"ref": {"name": "db"},
                                           "rules": [{"snapshots": ["latest"]}]}}},
    "Task": {"apiVersion": "stashq.io/v1alpha1", "kind": "Task", "metadata": {"name": "t"},
             "spec": {"steps": [{"name": "precheck"}]}},
    "Function": {"apiVersion": "stashq.io/v1alpha1", "kind": "Function",
                 "metadata": {"name": "f"}, "spec": {"step": "stashq.dump_upload"}},
    "Secret": {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
               "stringData": {"username": "root"}},
}

DELETE = object()
#: Values past the bounds of a field kept for compatibility with Stash (``Compat``).
BIG = {"script": "x" * MAX_COMPAT_BYTES}
DEEP = nested_value(33)
BOMB = {"laughs": shared_bomb(5)}  # 600 KiB serialized, a few hundred bytes in memory
#: Seconds a hostile value may take to be refused (the unbounded ones took minutes).
REFUSAL_S = 5.0

#: (kind, dotted path, new value or DELETE, expected field path in the message)
CASES: list[tuple[str, str, Any, str]] = [
    # Repository
    ("Repository", "spec.backend.s3.bucket", "ab", "spec.backend.s3.bucket"),
    ("Repository", "spec.backend.s3.bucket", "Has_Upper", "spec.backend.s3.bucket"),
    ("Repository", "spec.backend.s3.bucket", 42, "spec.backend.s3.bucket"),
    ("Repository", "spec.backend.s3.bucket", "x" * 64, "spec.backend.s3.bucket"),
    ("Repository", "spec.backend.s3.bucket", DELETE, "spec.backend.s3.bucket"),
    ("Repository", "spec.backend.s3.insecureTLS", "maybe", "spec.backend.s3.insecureTLS"),
    ("Repository", "spec.backend.s3.prefix", "p" * 600, "spec.backend.s3.prefix"),
    ("Repository", "spec.backend.storageSecretName", DELETE, "spec.backend"),
    ("Repository", "spec.backend.gcs", {"bucket": "b"}, "spec.backend.gcs"),
    ("Repository", "spec.backend", "s3://bucket", "spec.backend"),
    ("Repository", "spec.wipeOut", [], "spec.wipeOut"),
    ("Repository", "spec", DELETE, "spec"),
    ("Repository", "metadata.name", "repo; DROP TABLE x", "metadata.name"),
    ("Repository", "metadata.name", "répo", "metadata.name"),
    ("Repository", "metadata.name", "r" * 300, "metadata.name"),
    ("Repository", "metadata.name", "", "metadata.name"),
    ("Repository", "metadata", "repo", "metadata"),
    ("Repository", "metadata.namespace", "Not Valid", "metadata.namespace"),
    # AppBinding
    ("AppBinding", "spec.type", "kubedb.com/oracle", "spec.type"),
    ("AppBinding", "spec.type", DELETE, "spec.type"),
    ("AppBinding", "spec.clientConfig.url", "tcp(host:notaport)/", "spec.clientConfig"),
    ("AppBinding", "spec.clientConfig.url", "mysql://:3306", "spec.clientConfig"),
    ("AppBinding", "spec.clientConfig", {}, "spec.clientConfig"),
    ("AppBinding", "spec.clientConfig", {"caBundle": "x"}, "spec.clientConfig"),
    ("AppBinding", "spec.clientConfig.service", {"name": "db", "port": 70000},
     "spec.clientConfig.service.port"),
    ("AppBinding", "spec.secret", DELETE, "spec.secret"),
    ("AppBinding", "spec.secret.name", "`whoami`", "spec.secret.name"),
    ("AppBinding", "spec.parameters", ["a"], "spec.parameters"),
    ("AppBinding", "apiVersion", "stashq.io/v1alpha1", "apiVersion"),
    # BackupConfiguration
    ("BackupConfiguration", "spec.schedule", "61 * * * *", "spec.schedule"),
    ("BackupConfiguration", "spec.schedule", "every day", "spec.schedule"),
    ("BackupConfiguration", "spec.schedule", "* * * *", "spec.schedule"),
    ("BackupConfiguration", "spec.schedule", 5, "spec.schedule"),
    ("BackupConfiguration", "spec.timeZone", "Europe/Atlantis", "spec.timeZone"),
    ("BackupConfiguration", "spec.timeZone", "../../etc/passwd", "spec.timeZone"),
    ("BackupConfiguration", "spec.paused", "yes please", "spec.paused"),
    ("BackupConfiguration", "spec.repository", DELETE, "spec.repository"),
    ("BackupConfiguration", "spec.repository.name", None, "spec.repository.name"),
    ("BackupConfiguration", "spec.target.ref", DELETE, "spec.target.ref"),
    ("BackupConfiguration", "spec.target.ref.name", "db name", "spec.target.ref.name"),
    ("BackupConfiguration", "spec.task.name", "Bad Task", "spec.task.name"),
    ("BackupConfiguration", "spec.task.params", [{"name": "databases"}],
     "spec.task.params[0].value"),
    ("BackupConfiguration", "spec.task.params", [{"name": "x", "value": "v" * 5000}],
     "spec.task.params[0].value"),
    ("BackupConfiguration", "spec.retentionPolicy.keepLast", -1,
     "spec.retentionPolicy.keepLast"),
    ("BackupConfiguration", "spec.retentionPolicy.keepDaily", "7d",
     "spec.retentionPolicy.keepDaily"),
    ("BackupConfiguration", "spec.retentionPolicy.prune", "sure",
     "spec.retentionPolicy.prune"),
    ("BackupConfiguration", "spec.retentionPolicy.keepForever", 1,
     "spec.retentionPolicy.keepForever"),
    ("BackupConfiguration", "spec.backupHistoryLimit", -5, "spec.backupHistoryLimit"),
    ("BackupConfiguration", "spec.backupHistoryLimit", 1.5, "spec.backupHistoryLimit"),
    ("BackupConfiguration", "spec.retryConfig", {"maxRetry": 100}, "spec.retryConfig.maxRetry"),
    ("BackupConfiguration", "spec.schedul", "0 2 * * *", "spec.schedul"),
    # BackupSession / RestoreSession
    ("BackupSession", "spec.invoker", DELETE, "spec.invoker"),
    ("BackupSession", "spec.invoker.kind", "CronJob", "spec.invoker.kind"),
    ("BackupSession", "spec.retryLeft", -1, "spec.retryLeft"),
    ("RestoreSession", "spec.target.rules", [{"snapshots": "latest"}],
     "spec.target.rules[0].snapshots"),
    ("RestoreSession", "spec.repository", {"name": "🙂"}, "spec.repository.name"),
    ("RestoreSession", "spec.target.replicas", 0, "spec.target.replicas"),
    # Task / Function
    ("Task", "spec.steps", [], "spec.steps"),
    ("Task", "spec.steps", [{"params": []}], "spec.steps[0].name"),
    ("Task", "spec.engine", "postgres", "spec.engine"),
    ("Task", "spec.serverVersions", "about ten", "spec.serverVersions"),
    ("Function", "spec.step", "os.system", "spec.step"),
    ("Function", "spec.step", DELETE, "spec.step"),
    # Fields kept for compatibility with Stash: bounded in size and depth
    ("BackupConfiguration", "spec.runtimeSettings", BIG, "spec.runtimeSettings"),
    ("BackupConfiguration", "spec.runtimeSettings", DEEP, "spec.runtimeSettings"),
    ("BackupConfiguration", "spec.runtimeSettings", BOMB, "spec.runtimeSettings"),
    ("BackupConfiguration", "spec.runtimeSettings", DEEP, "spec.runtimeSettings"),
    ("BackupConfiguration", "spec.tempDir", BIG, "spec.tempDir"),
    ("BackupConfiguration", "spec.interimVolumeTemplate", BOMB, "spec.interimVolumeTemplate"),
    ("RestoreSession", "spec.runtimeSettings", BOMB, "spec.runtimeSettings"),
    ("RestoreSession", "spec.runtimeSettings", BIG, "spec.runtimeSettings"),
    ("RestoreSession", "spec.target.volumeClaimTemplates", [DEEP],
     "spec.target.volumeClaimTemplates"),
    ("AppBinding", "spec.parameters", BIG, "spec.parameters"),
    ("AppBinding", "spec.appRef", DEEP, "spec.appRef"),
    ("AppBinding", "spec.secretTransforms", [BOMB], "spec.secretTransforms"),
    ("Repository", "spec.backend", {"local": {"mountPath": "/r", "hostPath": BIG}},
     "spec.backend.local.hostPath"),
    ("Repository", "spec.backend", {"local": {"mountPath": "/r", "nfs": DEEP}},
     "spec.backend.local.nfs"),
    ("Repository", "spec.backend", {"local": {"mountPath": "/r", "persistentVolumeClaim": BOMB}},
     "spec.backend.local.persistentVolumeClaim"),
    # Secret
    ("Secret", "data", {"password": "%%%"}, "data"),
    ("Secret", "stringData", {"password": 5}, "stringData.password"),
    ("Secret", "apiVersion", "v2", "apiVersion"),
]


def mutate(kind: str, path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASES[kind])
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return raw


def test_the_corpus_is_large() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize("kind", sorted(BASES))
def test_bases_are_valid(kind: str) -> None:
    parse_resource(BASES[kind])


@pytest.mark.parametrize(("kind", "path", "value", "field"), CASES,
                         ids=[f"{k}:{p}" for k, p, _, _ in CASES])
def test_malformed_resource_is_rejected_with_its_path(kind: str, path: str, value: Any,
                                                      field: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_resource(mutate(kind, path, value), source="corpus.yaml")
    message = str(info.value)
    assert message.startswith("corpus.yaml: ")
    assert f" {field}: " in message or message.endswith(f" {field}"), message
    assert len(message) < 600  # huge values are not echoed back whole


def test_compat_fields_take_what_stash_manifests_hold() -> None:
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                          "labelSelector": {"matchExpressions": [
                                              {"key": "app", "operator": "In",
                                               "values": ["mariadb"]}]}}}]}}
    raw = mutate("BackupConfiguration", "spec.runtimeSettings", {"pod": {"affinity": affinity}})
    raw["spec"]["hooks"] = {"preBackup": {"exec": {"command": ["/bin/sh", "-c",
                                                               "x" * (MAX_COMPAT_BYTES // 2)]}}}
    parse_resource(raw)


#: (kind, dotted path, value, reason): past the bounds of a whole resource, which hold
#: whatever built the raw dict (a reader, a store's client), before any field is read.
DOCUMENT_CASES: list[tuple[str, str, Any, str]] = [
    ("BackupConfiguration", "status", nested_value(70), "is nested more than 64 levels deep"),
    ("Repository", "metadata.managedFields", [nested_value(70)], "is nested more than 64"),
    ("BackupConfiguration", "spec.runtimeSettings", {"laughs": shared_bomb(9)},
     "is larger than 3 MiB serialized"),
    ("AppBinding", "metadata.annotations", {"big": "x" * MAX_MANIFEST_BYTES}, "is larger than"),
]


@pytest.mark.parametrize(("kind", "path", "value", "reason"), DOCUMENT_CASES,
                         ids=[f"{k}:{p}" for k, p, _, _ in DOCUMENT_CASES])
def test_a_resource_past_the_document_bounds_is_refused(kind: str, path: str, value: Any,
                                                        reason: str) -> None:
    start = time.monotonic()
    with pytest.raises(InvalidResource) as info:
        parse_resource(mutate(kind, path, value), source="corpus.yaml")
    assert time.monotonic() - start < REFUSAL_S
    assert str(info.value).startswith(f"corpus.yaml: {kind} ")
    assert reason in str(info.value)


def test_a_resource_that_contains_itself_is_refused() -> None:
    raw = mutate("BackupConfiguration", "spec.runtimeSettings", {})
    raw["spec"]["runtimeSettings"]["again"] = raw["spec"]["runtimeSettings"]
    with pytest.raises(InvalidResource, match="is nested more than 64 levels deep"):
        parse_resource(raw, source="corpus.yaml")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_manifest_is_refused_quickly_with_its_reason(name: str) -> None:
    text, reason = HOSTILE[name]
    start = time.monotonic()
    with pytest.raises(InvalidResource) as info:
        parse_all(load_text(text, "corpus.yaml"))
    assert time.monotonic() - start < REFUSAL_S
    message = str(info.value)
    assert message.startswith("corpus.yaml: ") and reason in message, message
    assert len(message) < 600


def test_a_refusal_names_the_line_where_yaml_gives_one() -> None:
    text, _ = HOSTILE["duplicate-schedule"]
    with pytest.raises(InvalidResource, match=r'^corpus\.yaml: line 9: duplicate key '
                                              r'"schedule" \(first on line 6\)$'):
        load_text(text, "corpus.yaml")


#: (JSON read back from a store, reason): the same bounds as a manifest file.
STORED_JSON: list[tuple[str | bytes, str]] = [
    ('{"spec": {"schedule": "0 3 * * *", "schedule": "*/1 * * * *"}}',
     'duplicate key "schedule"'),
    ("[" * 20_000 + "]" * 20_000, "is nested more than 64 levels deep"),
    ("[" * 100 + "]" * 100, "is nested more than 64 levels deep"),
    (json.dumps({"pad": "x" * MAX_MANIFEST_BYTES}), "is larger than 3 MiB"),
    (b'{"name": "\xff"}', "the stored JSON is unreadable"),
    ("{not json", "the stored JSON is unreadable"),
]


@pytest.mark.parametrize(("body", "reason"), STORED_JSON,
                         ids=["duplicate", "deep", "deeper-than-64", "oversize", "not-utf8",
                              "garbled"])
def test_stored_json_is_read_as_strictly(body: str | bytes, reason: str) -> None:
    with pytest.raises(InvalidResource) as info:
        load_json(body, source="state store")
    assert str(info.value).startswith(f"state store: {reason}"), str(info.value)
