"""What the Kubernetes store adds to the contract suite: conflicts, Secrets, raw access,
API errors as sentences, and locks as Lease objects (the shared behaviour is in
tests/contract/test_store.py)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.kube import FakeKubeAPI
from tests.kube.server import MAX_NAME_CHARS, NAME_PATTERN, ApiError
from workers.state import open_store
from workers.state.base import INITIAL_PHASE_ANNOTATION, ResourceVersionExpired
from workers.state.kube import CONFLICT_ATTEMPTS, KubeStore, api_client
from workers.state.lease_table import HOLDERS_ANNOTATION, LOCK_ANNOTATION, lease_name, micro_time
from workflows.errors import InvalidResource, NotFound, StashQError, TransientStorageError
from workflows.parsing import parse_resource
from workflows.resources import BackupConfiguration, BackupSession, RestoreSession, Secret
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


def restore_session(name: str) -> RestoreSession:
    resource = parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "RestoreSession",
                               "metadata": {"name": name, "namespace": "demo"},
                               "spec": {"repository": {"name": "repo"},
                                        "target": {"ref": {"name": "db"}}}})
    assert isinstance(resource, RestoreSession)
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


# --- locks as coordination.k8s.io/v1 Leases ---------------------------------------------

LOCK = "repository:s3:backups/Prod_DB"
LEASE_NS = "stashq-system"


def lease_store(kubeconfig: Path, clock: Callable[[], float] = time.time) -> KubeStore:
    return KubeStore(api_client(str(kubeconfig)), LEASE_NS, clock=clock)


def stored_lease(api: FakeKubeAPI, lock: str = LOCK) -> dict[str, Any]:
    return api.get("coordination.k8s.io/v1", "Lease", lease_name(lock), LEASE_NS)


def test_a_lock_is_one_lease_holding_its_holders(kubeconfig: Path, kube_api: FakeKubeAPI) -> None:
    store = lease_store(kubeconfig)
    for token in ("a", "b"):
        store.acquire_lease(LOCK, token, {"owner": f"BackupSession/demo/{token}-1"},
                            exclusive=False, lease_s=30)
    lease = stored_lease(kube_api)
    assert lease["metadata"]["name"].startswith("stashq-repository-s3-backups-prod-db-")
    assert lease["metadata"]["annotations"][LOCK_ANNOTATION] == LOCK
    holders = json.loads(lease["metadata"]["annotations"][HOLDERS_ANNOTATION])
    assert sorted(holders) == ["a", "b"] and holders["a"]["exclusive"] is False
    assert lease["spec"]["holderIdentity"] == "BackupSession/demo/a-1, BackupSession/demo/b-1"
    assert lease["spec"]["leaseDurationSeconds"] == 30
    renewed_at = datetime.fromisoformat(lease["spec"]["renewTime"]).timestamp()
    assert abs(renewed_at - time.time()) < 5
    store.release_lease(LOCK, "a")
    assert sorted(json.loads(stored_lease(kube_api)["metadata"]["annotations"]
                             [HOLDERS_ANNOTATION])) == ["b"]
    store.release_lease(LOCK, "b")  # the last one out deletes it, as Redis drops the hash
    with pytest.raises(ApiError, match="not found"):
        stored_lease(kube_api)


def test_the_lease_namespace_is_the_settings_one(kubeconfig: Path) -> None:
    for settings, namespace in ((Settings(namespace="team"), "team"),
                                (Settings(namespace="team", lease_namespace="locks"), "locks")):
        store = open_store(replace(settings, store="kubernetes", kubeconfig=str(kubeconfig)))
        assert isinstance(store, KubeStore) and store.lease_namespace == namespace


def test_lease_writes_that_lose_a_race_decide_again(kubeconfig: Path,
                                                    kube_api: FakeKubeAPI) -> None:
    store = lease_store(kubeconfig)
    store.acquire_lease(LOCK, "a", {"owner": "a"}, exclusive=False, lease_s=30)
    path = f"/leases/{lease_name(LOCK)}"
    kube_api.inject("PUT", path, 409, times=CONFLICT_ATTEMPTS - 1)
    assert store.acquire_lease(LOCK, "b", {"owner": "b"}, exclusive=False, lease_s=30).acquired
    kube_api.inject("PUT", path, 409, times=CONFLICT_ATTEMPTS)
    with pytest.raises(TransientStorageError, match="kept changing"):
        store.renew_lease(LOCK, "a", 30)
    kube_api.inject("DELETE", path, 409)
    store.release_lease(LOCK, "a")
    store.release_lease(LOCK, "b")
    assert [r for r in kube_api.requests if r[0] == "DELETE"][-1][1].endswith(path)
    with pytest.raises(ApiError, match="not found"):
        stored_lease(kube_api)


def test_expiry_is_read_on_the_readers_clock_and_a_skewed_one_is_reported(
        kubeconfig: Path, kube_api: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    lease_store(kubeconfig).acquire_lease(LOCK, "a", {"owner": "a"}, exclusive=True,
                                          lease_s=30)
    ahead = lease_store(kubeconfig, clock=lambda: time.time() + 31)
    with caplog.at_level(logging.WARNING, logger="workers.state.kube"):
        answer = ahead.acquire_lease(LOCK, "b", {"owner": "b"}, exclusive=True, lease_s=30)
    # The assumption lease_table.py states, broken: a clock a lease ahead takes over.
    assert answer.acquired and [h["owner"] for h in answer.expired] == ["a"]
    # The server's Date header has whole seconds: 31 s ahead reads as 31 or 32.
    assert re.search(r"clock is 3[12] s ahead of the Kubernetes API server's", caplog.text)


def test_a_holder_table_nobody_can_read_is_reported_as_lapsed(kubeconfig: Path,
                                                              kube_api: FakeKubeAPI) -> None:
    kube_api.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": lease_name(LOCK), "namespace": LEASE_NS,
                                  "annotations": {HOLDERS_ANNOTATION: "edited by hand"}},
                     "spec": {}})
    answer = lease_store(kubeconfig).acquire_lease(LOCK, "a", {"owner": "a"}, exclusive=True,
                                                   lease_s=30)
    assert answer.acquired and answer.expired == [{"owner": "edited by hand"}]


@pytest.mark.parametrize("lock", [LOCK, "repository:s3:backups/prod-db", "target:AppBinding/"
                                  "demo/db", "sweep:BackupSession/demo/nightly-1", "::", "x" * 400,
                                  "repository:local:/Ünïcode/päth"])
def test_lease_names_are_valid_object_names_and_keep_locks_apart(lock: str) -> None:
    name = lease_name(lock)
    assert len(name) <= MAX_NAME_CHARS and NAME_PATTERN.fullmatch(name), name
    assert lease_name(lock + "/") != name
    assert lease_name(lock.upper()) != name or lock.upper() == lock


def test_lease_times_are_micro_times_even_on_a_whole_second() -> None:
    assert micro_time(1735700400000) == "2025-01-01T03:00:00.000000Z"
    assert micro_time(1735700400123) == "2025-01-01T03:00:00.123000Z"


def test_create_many_goes_on_past_one_that_fails(store: KubeStore, kube_api: FakeKubeAPI,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    kube_api.inject("POST", SESSIONS, 500)
    with caplog.at_level(logging.WARNING, logger="workers.state.kube"):
        made = store.create_many([session("s-1"), session("s-2"), session("s-2")])
    assert made == [None, True, False]
    assert "could not create BackupSession demo/s-1" in caplog.text


# --- Events: each status transition, as kubectl describe shows it ----------------------


def reasons(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["reason"], e["type"]) for e in events]


def test_each_transition_is_an_event_on_the_session_and_its_configuration(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    store.apply(config("nightly"))
    config_uid = kube_api.get("stashq.io/v1alpha1", "BackupConfiguration", "nightly",
                              "demo")["metadata"]["uid"]
    store.create(session("s-1", phase="Pending"))
    store.patch_status(BackupSession, "s-1", "demo", {"queueToken": "t1", "queuedAt": "now"})
    assert store.patch_status_where(BackupSession, "s-1", "demo", {"queueToken": "t1"},
                                    {"phase": "Running", "claimedBy": "t1"}) is not None
    for _ in range(3):  # heartbeats and progress tell nothing new
        store.patch_status(BackupSession, "s-1", "demo", {"heartbeatAt": str(time.time())})
    store.patch_status(BackupSession, "s-1", "demo", {"snapshot": {"name": "s-1"}})
    store.patch_status(BackupSession, "s-1", "demo", {"phase": "Failed",
                                                      "reason": "S3 bucket gone"})

    told = kube_api.events_about("BackupSession", "s-1", "demo")
    assert reasons(told) == [("BackupSessionQueued", "Normal"), ("BackupSessionRunning", "Normal"),
                             ("BackupSessionFailed", "Warning")]
    assert told[-1]["message"] == "failed: S3 bucket gone"
    uid = kube_api.get("stashq.io/v1alpha1", "BackupSession", "s-1", "demo")["metadata"]["uid"]
    assert {e["involvedObject"]["uid"] for e in told} == {uid}
    stamps = [datetime.fromisoformat(e["lastTimestamp"]).timestamp() for e in told]
    assert all(abs(time.time() - stamp) < 60 for stamp in stamps), stamps
    on_config = kube_api.events_about("BackupConfiguration", "nightly", "demo")
    assert reasons(on_config)[-3:] == reasons(told)
    assert on_config[-1]["message"] == "BackupSession s-1: failed: S3 bucket gone"
    assert {e["involvedObject"]["uid"] for e in on_config[-3:]} == {config_uid}


def test_an_event_the_api_refuses_leaves_the_status_patch_standing(
        store: KubeStore, kube_api: FakeKubeAPI, caplog: pytest.LogCaptureFixture) -> None:
    store.create(restore_session("r-1"))
    kube_api.inject("POST", "/namespaces/demo/events", 403)
    assert store.patch_status(RestoreSession, "r-1", "demo", {"phase": "Failed",
                                                              "reason": "no snapshot"})[
        "phase"] == "Failed"
    assert "no Event for RestoreSession r-1: RuntimeError: the API answered 403" in caplog.text
    assert kube_api.events_about("RestoreSession", "r-1", "demo") == []
    store.patch_status(RestoreSession, "r-1", "demo", {"phase": "Succeeded"})  # not refused
    assert reasons(kube_api.events_about("RestoreSession", "r-1", "demo")) == [
        ("RestoreSessionSucceeded", "Normal")]


def test_the_fake_api_refuses_events_a_real_one_refuses(kube_api: FakeKubeAPI) -> None:
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "x.1", "namespace": "demo"},
             "involvedObject": {"kind": "BackupSession", "name": "x", "namespace": "demo"},
             "reason": "BackupSessionFailed", "type": "Normal", "message": "m"}
    kube_api.create(event)
    for field, value in (("type", "Error"), ("reason", ""),
                         ("involvedObject", {"kind": "BackupSession", "name": "x",
                                             "namespace": "other"})):
        with pytest.raises(ApiError, match=f"{field}"):
            kube_api.create({**event, "metadata": {"name": "x.2", "namespace": "demo"},
                             field: value})


# --- ownerReferences: a configuration's sessions go with it ------------------------------


def test_sessions_beat_or_the_cli_create_are_deleted_with_their_configuration(
        store: KubeStore, kube_api: FakeKubeAPI) -> None:
    from beat.dispatch import new_backup_session

    store.apply(config("nightly"))
    store.apply(config("weekly"))
    nightly = store.get(BackupConfiguration, "nightly", "demo")
    made = new_backup_session(store, "nightly", "demo", 100, owner=nightly)
    assert made is not None
    new_backup_session(store, "weekly", "demo", 100,
                       owner=store.get(BackupConfiguration, "weekly", "demo"))
    store.create(session("by-hand"))  # kubectl create: nobody owns it
    owners = kube_api.get("stashq.io/v1alpha1", "BackupSession", made.name,
                          "demo")["metadata"]["ownerReferences"]
    assert owners == [{"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
                       "name": "nightly", "uid": (nightly.metadata.model_extra or {})["uid"],
                       "controller": True, "blockOwnerDeletion": False}]

    store.delete(BackupConfiguration, "nightly", "demo")
    assert sorted(s.name for s in store.list(BackupSession, "demo")) == ["by-hand", "weekly-100"]
