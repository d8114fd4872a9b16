"""What the Kubernetes store adds to the contract suite: conflicts, Secrets, raw access,
and API errors as sentences (the shared behaviour is in tests/contract/test_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kube import FakeKubeAPI
from workers.state import open_store
from workers.state.base import INITIAL_PHASE_ANNOTATION, ResourceVersionExpired
from workers.state.kube import CONFLICT_ATTEMPTS, KubeStore
from workflows.errors import InvalidResource, NotFound, StashQError, TransientStorageError
from workflows.parsing import parse_resource
from workflows.resources import BackupConfiguration, BackupSession, Secret
from workflows.settings import Settings

SESSIONS = "/namespaces/demo/backupsessions"


@pytest.fixture
def store(kubeconfig: Path) -> KubeStore:
    store = open_store(Settings(store="kubernetes", kubeconfig=str(kubeconfig)))
    assert isinstance(store, KubeStore)
    return store


def session(name: str, **status: str) -> BackupSession:
    resource = parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
                               "metadata": {"name": name, "namespace": "demo"},
                               "spec": {"invoker": {"name": "nightly"}}, "status": status})
    assert isinstance(resource, BackupSession)
    return resource


def config(name: str, **spec: object) -> BackupConfiguration:
    resource = parse_resource({"apiVersion": "stash.appscode.com/v1beta1",
                               "kind": "BackupConfiguration",
                               "metadata": {"name": name, "namespace": "demo",
                                            "labels": {"team": "shop"}},
                               "spec": {"repository": {"name": "repo"},
                                        "target": {"ref": {"name": "db"}}, **spec}})
    assert isinstance(resource, BackupConfiguration)
    return resource


def test_status_updates_survive_409_conflicts(store: KubeStore, kube_api: FakeKubeAPI) -> None:
    store.create(session("s-1"))
    kube_api.inject("PATCH", f"{SESSIONS}/s-1/status", 409, times=CONFLICT_ATTEMPTS - 1)
    assert store.patch_status(BackupSession, "s-1", "demo", {"phase": "Running"}) == {
        "phase": "Running"}
    assert store.get(BackupSession, "s-1", "demo").status == {"phase": "Running"}
    kube_api.inject("PATCH", f"{SESSIONS}/s-1/status", 409, times=CONFLICT_ATTEMPTS)
    with pytest.raises(TransientStorageError, match="kept conflicting"):
        store.patch_status(BackupSession, "s-1", "demo", {"phase": "Failed"})


def test_apply_retries_a_replace_that_lost_a_race(store: KubeStore,
                                                   kube_api: FakeKubeAPI) -> None:
    store.apply(config("nightly"))
    kube_api.inject("PUT", "/backupconfigurations/nightly", 409, times=2)
    store.apply(config("nightly", paused=True))
    stored = kube_api.get("stashq.io/v1alpha1", "BackupConfiguration", "nightly", "demo")
    assert stored["spec"]["paused"] is True
    assert stored["apiVersion"] == "stashq.io/v1alpha1"  # ported Stash manifests land here
    assert stored["metadata"]["labels"] == {"team": "shop"}
    assert "timeZone" not in stored["spec"]  # written as given, defaults left to the parser


def test_create_writes_the_initial_phase_where_the_first_event_shows_it(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    assert store.create(session("s-1", phase="Skipped"))
    stored = kube_api.get("stashq.io/v1alpha1", "BackupSession", "s-1", "demo")
    assert stored["metadata"]["annotations"][INITIAL_PHASE_ANNOTATION] == "Skipped"
    assert stored["status"] == {"phase": "Skipped"}


def test_secrets_are_read_through_the_core_api(store: KubeStore) -> None:
    secret = parse_resource({"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "auth", "namespace": "demo"},
                             "stringData": {"username": "root", "password": "pw"}})
    store.apply(secret)
    read = store.get(Secret, "auth", "demo")
    assert read.values == {"username": "root", "password": "pw"}
    assert "pw" not in repr(read)
    store.apply(secret.model_copy(update={"string_data": {"username": "admin"}}))
    assert store.get(Secret, "auth", "demo").values == {"username": "admin"}
    assert [s.name for s in store.list(Secret, "demo")] == ["auth"]
    store.delete(Secret, "auth", "demo")
    with pytest.raises(NotFound, match='Secret "auth" not found in namespace "demo"'):
        store.get(Secret, "auth", "demo")


def test_a_conditional_status_patch_loses_to_any_write_since(store: KubeStore) -> None:
    store.create(session("s-1"))
    seen = store.get_raw("BackupSession", "s-1", "demo")["metadata"]["resourceVersion"]
    assert store.patch_status_if("BackupSession", "s-1", "demo", seen, {"claim": {"by": "a"}})
    assert not store.patch_status_if("BackupSession", "s-1", "demo", seen,
                                     {"claim": {"by": "b"}})
    assert not store.patch_status_if("BackupSession", "gone", "demo", seen, {"x": 1})
    assert store.get(BackupSession, "s-1", "demo").status == {"claim": {"by": "a"}}


def test_list_raw_bytes_change_with_spec_not_with_status(store: KubeStore) -> None:
    store.apply(config("nightly"))
    [before] = store.list_raw(BackupConfiguration, "demo")
    store.patch_status(BackupConfiguration, "nightly", "demo", {"phase": "Ready"})
    [after] = store.list_raw(BackupConfiguration, "demo")
    assert after.body == before.body and after.status == b'{"phase": "Ready"}'


def test_a_watch_from_an_expired_version_says_so(store: KubeStore,
                                                 kube_api: FakeKubeAPI) -> None:
    store.create(session("s-1"))
    _, version = store.list_versioned("BackupSession", None)
    store.create(session("s-2"))
    kube_api.compact()
    with pytest.raises(ResourceVersionExpired, match="too old resource version"):
        list(store.watch("BackupSession", None, version, timeout_s=1))


def test_an_object_the_parser_rejects_names_its_field(store: KubeStore,
                                                      kube_api: FakeKubeAPI) -> None:
    kube_api.create({"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
                     "metadata": {"name": "bad", "namespace": "demo"},
                     "spec": {"schedule": "61 * * * *", "repository": {"name": "r"},
                              "target": {"ref": {"name": "db"}}}})
    with pytest.raises(InvalidResource, match=r'namespace demo: BackupConfiguration "bad": '
                                              r'spec.schedule: "61 \* \* \* \*" is not a cron'):
        store.get(BackupConfiguration, "bad", "demo")


def test_an_unreachable_api_is_a_transient_error(tmp_path: Path) -> None:
    with FakeKubeAPI() as api:
        from tests.kube import write_kubeconfig

        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api)
    store = KubeStore.from_kubeconfig(str(kubeconfig))
    with pytest.raises(TransientStorageError, match="unreachable"):
        store.ping()


def test_a_missing_kubeconfig_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(StashQError, match="cannot configure the Kubernetes client"):
        KubeStore.from_kubeconfig(str(tmp_path / "nope"))
