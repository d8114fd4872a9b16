"""Resources parse into models, and every bad one is rejected with file, resource,
field path and reason."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.hostile import CONFIG_YAML, alias_bomb, flow_nesting, typed_alias_bomb
from workflows.bounds import MAX_DEPTH, MAX_MANIFEST_BYTES, MAX_NODES
from workflows.errors import InvalidResource
from workflows.manifests import load_manifests, load_text
from workflows.parsing import format_loc, parse_all, parse_resource
from workflows.resources import AppBinding, BackupConfiguration, Repository, Secret

CONFIG: dict[str, Any] = {
    "apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
    "metadata": {"name": "nightly"},
    "spec": {"schedule": "0 2 * * *", "repository": {"name": "repo"},
             "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1",
                                "kind": "AppBinding", "name": "db"}},
             "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True}},
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


def test_a_stash_style_configuration_parses() -> None:
    config = parse_resource(CONFIG, source="backup.yaml")
    assert isinstance(config, BackupConfiguration)
    assert config.spec.retention_policy is not None
    assert config.spec.retention_policy.keep_last == 5
    assert config.namespace == "default"


def test_stash_api_version_is_accepted_for_ported_manifests() -> None:
    raw = with_change("apiVersion", "stash.appscode.com/v1beta1")
    assert isinstance(parse_resource(raw), BackupConfiguration)


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("spec.schedule", "61 * * * *",
     'backup.yaml: BackupConfiguration "nightly": spec.schedule: "61 * * * *" is not a cron '
     "expression"),
    ("spec.timeZone", "Mars/Olympus", 'spec.timeZone: "Mars/Olympus" is not a known time zone'),
    ("spec.repository", {}, "spec.repository.name: is required"),
    ("spec.paused", "sometimes", "spec.paused:"),
    ("spec.backupHistoryLimit", -1, "spec.backupHistoryLimit:"),
    ("spec.retentionPolicy.keepLast", "five", "spec.retentionPolicy.keepLast:"),
    ("spec.taks", {"name": "x"}, "spec.taks: is not a known field"),
    ("metadata.name", "Bad_Name", 'metadata.name: "Bad_Name" does not match'),
    ("apiVersion", "v1", 'apiVersion: "v1" is not supported'),
    ("kind", "BackupConfig", 'kind: unknown kind "BackupConfig"'),
])
def test_bad_fields_are_named_with_their_path(path: str, value: Any, expected: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_resource(with_change(path, value), source="backup.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("backup.yaml: ")


def test_repository_needs_exactly_one_backend() -> None:
    raw = {"apiVersion": "stashq.io/v1alpha1", "kind": "Repository", "metadata": {"name": "r"},
           "spec": {"backend": {"storageSecretName": "s"}}}
    with pytest.raises(InvalidResource, match="exactly one of s3 or local"):
        parse_resource(raw)
    raw["spec"]["backend"]["s3"] = {"bucket": "ab"}
    with pytest.raises(InvalidResource, match=r"spec\.backend\.s3\.bucket"):
        parse_resource(raw)


def test_appbinding_reads_kubedb_urls_and_services() -> None:
    raw = {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
           "metadata": {"name": "db", "namespace": "demo"},
           "spec": {"type": "kubedb.com/mariadb", "secret": {"name": "auth"},
                    "clientConfig": {"url": "tcp(sample.demo.svc:13306)/"}}}
    binding = parse_resource(raw)
    assert isinstance(binding, AppBinding)
    assert binding.address() == ("sample.demo.svc", 13306)
    raw["spec"]["clientConfig"] = {"service": {"name": "sample", "namespace": "demo",
                                               "port": 3307, "path": "/", "scheme": "tcp"}}
    assert parse_resource(raw).address() == ("sample.demo.svc", 3307)  # type: ignore[attr-defined]
    raw["spec"]["clientConfig"]["url"] = "tcp(sample.demo.svc:3306)/"  # as KubeDB writes it
    assert parse_resource(raw).address() == ("sample.demo.svc", 3306)  # type: ignore[attr-defined]
    raw["spec"]["type"] = "kubedb.com/postgres"
    with pytest.raises(InvalidResource, match='unknown database type "kubedb.com/postgres"'):
        parse_resource(raw)


def test_secret_values_merge_and_never_show_in_repr() -> None:
    secret = parse_resource({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                             "data": {"password": "aHVudGVyMg=="},
                             "stringData": {"username": "root"}})
    assert isinstance(secret, Secret)
    assert secret.values == {"password": "hunter2", "username": "root"}
    assert "hunter2" not in repr(secret) and "aHVudGVyMg" not in repr(secret)
    with pytest.raises(InvalidResource, match=r'data\["password"\] is not base64'):
        parse_resource({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                        "data": {"password": "not base64!"}})


def test_files_and_folders_with_many_documents(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: stashq.io/v1alpha1\nkind: Repository\nmetadata: {name: r}\n"
        "spec: {backend: {local: {mountPath: /tmp/r}}}\n---\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("kind: Nope\n")
    items = load_manifests(tmp_path)
    assert [source.split("/")[-1] for source, _ in items] == ["a.yaml#0", "a.yaml#2", "b.yml"]
    with pytest.raises(InvalidResource, match=r'b\.yml: kind: unknown kind "Nope"'):
        parse_all(items)
    assert isinstance(parse_resource(items[0][1]), Repository)


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Repository\nmetadata: {name: [\n")
    with pytest.raises(InvalidResource, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_manifests(bad)


def test_a_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("kind: Repository\nmetadata: {name: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(InvalidResource, match=r"latin1\.yaml: cannot be read: 'utf-8' codec "
                                              r"can't decode byte 0xe9"):
        load_manifests(bad)


def test_a_file_above_the_size_bound_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(CONFIG_YAML + "  hooks: {pad: " + "x" * MAX_MANIFEST_BYTES + "}\n")
    with pytest.raises(InvalidResource, match=r"big\.yaml: is larger than 3 MiB \(the "
                                              r"Kubernetes API server's bound\)"):
        load_manifests(big)
    big.write_text(CONFIG_YAML + "  hooks: {pad: " + "x" * (MAX_MANIFEST_BYTES - 1000) + "}\n")
    assert len(load_manifests(big)) == 1


def test_format_loc() -> None:
    assert format_loc(("spec", "steps", 0, "name")) == "spec.steps[0].name"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["Repository", "AppBinding", "BackupConfiguration", "BackupSession",
                             "RestoreSession", "Task", "Function", "Secret", "Other"]),
       spec=json_values, metadata=json_values)
def test_parser_raises_only_invalid_resource(kind: str, spec: Any, metadata: Any) -> None:
    raw = {"apiVersion": "stashq.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
    try:
        parse_resource(raw, source="fuzz.yaml")
    except InvalidResource as e:
        assert str(e).startswith("fuzz.yaml: ")


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(["spec.schedule", "spec.repository", "spec.target", "spec.task",
                             "spec.retentionPolicy", "spec.paused", "spec.timeZone",
                             "metadata.name", "spec.backupHistoryLimit"]),
       value=json_values)
def test_mutated_configurations_fail_only_with_their_path(path: str, value: Any) -> None:
    try:
        parse_resource(with_change(path, value), source="b.yaml")
    except InvalidResource as e:
        assert f" {path}" in str(e), str(e)


RESTORE: dict[str, Any] = {
    "apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession", "metadata": {"name": "r"},
    "spec": {"repository": {"name": "repo"},
             "target": {"ref": {"name": "db"}, "rules": [{"sourceHots": "nightly"}]}},
}


@pytest.mark.parametrize(("raw", "expected"), [
    (with_change("spec.schedul", "0 3 * * *"),
     'spec.schedul: is not a known field (did you mean "schedule"?)'),
    (with_change("spec.retentionPolicy.keepLats", 3),
     'spec.retentionPolicy.keepLats: is not a known field (did you mean "keepLast"?)'),
    (RESTORE, 'spec.target.rules[0].sourceHots: is not a known field (did you mean '
              '"sourceHost"?)'),
    (with_change("spec.repository.zzz", 1),
     "spec.repository.zzz: is not a known field (known: name, namespace)"),
])
def test_an_unknown_field_gets_the_nearest_known_one(raw: dict[str, Any],
                                                     expected: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_resource(raw, source="b.yaml")
    assert str(info.value).endswith(expected)


def test_every_wrong_field_of_a_resource_is_named() -> None:
    raw = with_change("spec.schedule", "61 * * * *")
    raw["spec"]["paused"] = "sometimes"
    raw["spec"]["taks"] = {}
    with pytest.raises(InvalidResource) as info:
        parse_resource(raw, source="b.yaml")
    message = str(info.value)
    assert message.startswith('b.yaml: BackupConfiguration "nightly": ')
    for part in ('spec.schedule: "61 * * * *" is not a cron expression', "spec.paused: ",
                 'spec.taks: is not a known field (did you mean "task"?)'):
        assert part in message, message


@settings(max_examples=60, deadline=None)
@given(levels=st.integers(1, 7), fan=st.integers(1, 12), depth=st.integers(1, 120),
       duplicate=st.booleans(), where=st.sampled_from(["runtimeSettings", "interimVolumeTemplate",
                                                        "task"]))
def test_hostile_yaml_is_refused_quickly_and_only_as_invalid_resource(
        levels: int, fan: int, depth: int, duplicate: bool, where: str) -> None:
    bomb = typed_alias_bomb(levels, fan) if where == "task" else \
        f"  {where}:\n" + alias_bomb(levels, fan)
    text = (CONFIG_YAML + bomb + f"  tempDir: {{a: {flow_nesting(depth)}}}\n"
            + ('  schedule: "*/1 * * * *"\n' if duplicate else ""))
    start = time.monotonic()
    try:
        parse_all(load_text(text, "fuzz.yaml"))
        refusal = None
    except InvalidResource as e:
        refusal = str(e)
        assert refusal.startswith("fuzz.yaml: "), refusal
    assert time.monotonic() - start < 5.0
    hostile = fan ** levels > MAX_NODES or depth + 4 > MAX_DEPTH or duplicate
    if hostile:
        assert refusal is not None
    if not hostile and fan ** levels <= 1000 and depth <= 20 and where != "task":
        assert refusal is None


def restore_to(point: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
            "metadata": {"name": "back"},
            "spec": {"repository": {"name": "repo"}, "target": {"ref": {"name": "db"}},
                     "pointInTime": point}}


@pytest.mark.parametrize(("point", "expected"), [
    ({"time": "2026-12-06T10:15:00"}, 'spec.pointInTime.time: "2026-12-06T10:15:00" has no '
                                      "time zone: write it as RFC 3339 with one"),
    ({"time": "2026-12-06T10:15:00Z", "gtid": "0-1-4"}, "name exactly one point"),
    ({"file": "mysql-bin.000002"}, "a binlog position needs both file and position"),
    ({"gtid": "0-1"}, "spec.pointInTime.gtid:"),
])
def test_a_restore_point_without_time_zone_or_ambiguous_is_refused_at_apply(
        point: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidResource) as info:
        parse_resource(restore_to(point), source="restore.yaml")
    assert expected in str(info.value)


@pytest.mark.parametrize("point", [{"time": "2026-12-06T10:15:00+01:00"}, {"gtid": "0-1-4"},
                                   {"file": "mysql-bin.000002", "position": 1352}])
def test_each_kind_of_restore_point_parses(point: dict[str, Any]) -> None:
    session = parse_resource(restore_to(point))
    assert session.spec.point_in_time is not None  # type: ignore[attr-defined]
