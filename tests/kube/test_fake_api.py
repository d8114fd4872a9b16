"""The fake API server keeps the promises the store and the watcher rely on, over HTTP.

Each of these is behaviour of a real kube-apiserver that kmock 0.8 lacks; if the fake
drifted from it, the store and watcher tests would prove nothing.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.kube import FakeKubeAPI

SESSIONS = "/apis/stashq.io/v1alpha1/namespaces/demo/backupsessions"


def call(api: FakeKubeAPI, method: str, path: str, body: Any = None,
         content_type: str = "application/json") -> tuple[int, Any]:
    host = urlsplit(api.url)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=10)
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": content_type})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else None


def watch(api: FakeKubeAPI, query: str) -> list[dict[str, Any]]:
    """Every event of a watch until the server ends it."""
    status, lines = watch_lines(api, query)
    assert status == 200
    return [json.loads(line) for line in lines]


def watch_lines(api: FakeKubeAPI, query: str) -> tuple[int, list[bytes]]:
    host = urlsplit(api.url)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=10)
    conn.request("GET", f"{SESSIONS}?watch=true&{query}")
    response = conn.getresponse()
    lines = [line for line in response.read().splitlines() if line.strip()]
    conn.close()
    return response.status, lines


def session(name: str) -> dict[str, Any]:
    return {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupSession",
            "metadata": {"name": name}, "spec": {"invoker": {"name": "nightly"}},
            "status": {"phase": "Succeeded"}}


def test_create_answers_201_then_409_and_sets_what_the_server_owns(kube_api: FakeKubeAPI) -> None:
    code, created = call(kube_api, "POST", SESSIONS, session("s-1"))
    assert code == 201
    metadata = created["metadata"]
    assert metadata["namespace"] == "demo" and metadata["uid"] and metadata["generation"] == 1
    assert metadata["resourceVersion"] and metadata["creationTimestamp"].endswith("Z")
    assert "status" not in created  # the status subresource: create cannot set it
    code, answer = call(kube_api, "POST", SESSIONS, session("s-1"))
    assert (code, answer["reason"]) == (409, "AlreadyExists")
    code, answer = call(kube_api, "POST", SESSIONS,
                        {**session("s-2"), "metadata": {"name": "s-2", "resourceVersion": "1"}})
    assert code == 400


def test_status_and_spec_are_written_through_separate_doors(kube_api: FakeKubeAPI) -> None:
    _, created = call(kube_api, "POST", SESSIONS, session("s-1"))
    merge = "application/merge-patch+json"
    code, patched = call(kube_api, "PATCH", f"{SESSIONS}/s-1/status",
                         {"status": {"phase": "Running"}, "spec": {"retryLeft": 3}}, merge)
    assert code == 200 and patched["status"] == {"phase": "Running"}
    assert "retryLeft" not in patched["spec"]  # /status changes nothing else
    assert patched["metadata"]["generation"] == 1
    code, patched = call(kube_api, "PATCH", f"{SESSIONS}/s-1",
                         {"status": {"phase": "Failed"}, "spec": {"retryLeft": 3}}, merge)
    assert patched["status"] == {"phase": "Running"} and patched["spec"]["retryLeft"] == 3
    assert patched["metadata"]["generation"] == 2
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]
                                                             ["resourceVersion"])
    code, _ = call(kube_api, "PATCH", f"{SESSIONS}/s-1", {"spec": {}})
    assert code == 415  # a JSON body is not a merge patch


def test_a_resource_version_in_a_write_is_a_precondition(kube_api: FakeKubeAPI) -> None:
    _, created = call(kube_api, "POST", SESSIONS, session("s-1"))
    seen = created["metadata"]["resourceVersion"]
    merge = "application/merge-patch+json"
    ok = {"metadata": {"resourceVersion": seen}, "status": {"claim": "a"}}
    code, _ = call(kube_api, "PATCH", f"{SESSIONS}/s-1/status", ok, merge)
    assert code == 200
    code, answer = call(kube_api, "PATCH", f"{SESSIONS}/s-1/status",
                        {"metadata": {"resourceVersion": seen}, "status": {"claim": "b"}}, merge)
    assert (code, answer["reason"]) == (409, "Conflict")
    _, current = call(kube_api, "GET", f"{SESSIONS}/s-1")
    assert current["status"] == {"claim": "a"}
    code, _ = call(kube_api, "PUT", f"{SESSIONS}/s-1", {**session("s-1"), "metadata": {
        "name": "s-1", "resourceVersion": seen}})
    assert code == 409


def test_a_write_that_changes_nothing_takes_no_version(kube_api: FakeKubeAPI) -> None:
    _, created = call(kube_api, "POST", SESSIONS, session("s-1"))
    _, same = call(kube_api, "PATCH", f"{SESSIONS}/s-1", {"spec": {"invoker": {"name":
                                                                              "nightly"}}},
                   "application/merge-patch+json")
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_secrets_fold_string_data_into_base64_data(kube_api: FakeKubeAPI) -> None:
    code, created = call(kube_api, "POST", "/api/v1/namespaces/demo/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "auth"},
        "stringData": {"password": "s3cret"}})
    assert code == 201 and created["data"] == {"password": "czNjcmV0"}
    assert "stringData" not in created


def test_list_carries_the_version_to_watch_from(kube_api: FakeKubeAPI) -> None:
    call(kube_api, "POST", SESSIONS, session("b"))
    call(kube_api, "POST", SESSIONS, session("a"))
    _, listed = call(kube_api, "GET", SESSIONS)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    version = listed["metadata"]["resourceVersion"]
    call(kube_api, "POST", SESSIONS, session("c"))
    call(kube_api, "DELETE", f"{SESSIONS}/a")
    events = watch(kube_api, f"resourceVersion={version}&timeoutSeconds=0.3")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "c"), ("DELETED", "a")]
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) > int(version)
    everything = watch(kube_api, "timeoutSeconds=0.3")  # no version: current state first
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in everything] == [
        ("ADDED", "b"), ("ADDED", "c")]


def test_a_watch_from_before_the_horizon_gets_410(kube_api: FakeKubeAPI) -> None:
    _, created = call(kube_api, "POST", SESSIONS, session("a"))
    kube_api.compact()
    [event] = watch(kube_api, f"resourceVersion={created['metadata']['resourceVersion']}")
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")


def test_a_dropped_watch_ends_without_its_final_chunk(kube_api: FakeKubeAPI) -> None:
    outcome: list[BaseException | int] = []

    def read() -> None:
        try:
            outcome.append(watch_lines(kube_api, "timeoutSeconds=30")[0])
        except (http.client.IncompleteRead, ConnectionError) as e:
            outcome.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    while kube_api.open_watches == 0:
        threading.Event().wait(0.01)
    kube_api.drop_watches()
    reader.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], http.client.IncompleteRead)


@pytest.mark.parametrize("code", [409, 500])
def test_injected_faults_answer_once_then_heal(kube_api: FakeKubeAPI, code: int) -> None:
    kube_api.inject("POST", "/backupsessions", code)
    assert call(kube_api, "POST", SESSIONS, session("a"))[0] == code
    assert call(kube_api, "POST", SESSIONS, session("a"))[0] == 201


# --- coordination.k8s.io/v1 Leases, as the Kubernetes store's locks use them ------------

LEASES = "/apis/coordination.k8s.io/v1/namespaces/demo/leases"


def lease(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "annotations": {"stashq.io/holders": "{}"}},
            "spec": {"holderIdentity": "w-1", "leaseDurationSeconds": 60,
                     "renewTime": "2025-01-01T03:00:00.000000Z", **spec}}


def test_a_lease_is_written_only_at_the_version_its_writer_read(kube_api: FakeKubeAPI) -> None:
    code, created = call(kube_api, "POST", LEASES, lease("lock-a"))
    assert code == 201 and "generation" not in created["metadata"]  # a built-in kind
    seen = created["metadata"]["resourceVersion"]
    renewed = lease("lock-a", renewTime="2025-01-01T03:00:20.000000Z")
    code, put = call(kube_api, "PUT", f"{LEASES}/lock-a",
                     {**renewed, "metadata": {**renewed["metadata"], "resourceVersion": seen}})
    assert code == 200 and put["spec"]["renewTime"] == "2025-01-01T03:00:20.000000Z"
    code, answer = call(kube_api, "PUT", f"{LEASES}/lock-a",
                        {**renewed, "metadata": {**renewed["metadata"], "resourceVersion": seen}})
    assert (code, answer["reason"]) == (409, "Conflict")  # it moved on since ``seen``

    stale = {"kind": "DeleteOptions", "apiVersion": "v1",
             "preconditions": {"resourceVersion": seen}}
    code, answer = call(kube_api, "DELETE", f"{LEASES}/lock-a", stale)
    assert (code, answer["reason"]) == (409, "Conflict")
    assert "Precondition failed: ResourceVersion in precondition" in answer["message"]
    current = {"preconditions": {"resourceVersion": put["metadata"]["resourceVersion"],
                                 "uid": created["metadata"]["uid"]}}
    assert call(kube_api, "DELETE", f"{LEASES}/lock-a", current)[0] == 200
    code, answer = call(kube_api, "GET", f"{LEASES}/lock-a")
    assert (code, answer["message"]) == (404, 'leases.coordination.k8s.io "lock-a" not found')


@pytest.mark.parametrize(("body", "code", "message"), [
    (lease("Lock_A"), 422, 'metadata.name: Invalid value: "Lock_A": a lowercase RFC 1123'),
    (lease("x" * 254), 422, "metadata.name: Invalid value"),
    ({**lease("a"), "metadata": {"name": "a", "annotations": {"k": "v" * 2**18}}}, 422,
     "metadata.annotations: Too long: must have at most 262144 bytes"),
    (lease("a", leaseDurationSeconds=0), 422,
     "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
    (lease("a", leaseDurationSeconds=1.5), 400, "spec.leaseDurationSeconds: cannot unmarshal"),
    (lease("a", leaseTransitions=-1), 422, "spec.leaseTransitions: Invalid value: -1"),
    (lease("a", renewTime="2025-01-01T03:00:00Z"), 400, 'spec.renewTime: parsing time'),
    (lease("a", acquireTime="2025-01-01T03:00:00.123Z"), 400, 'spec.acquireTime: parsing'),
])
def test_what_the_api_server_refuses_is_refused(kube_api: FakeKubeAPI, body: dict[str, Any],
                                                code: int, message: str) -> None:
    answer = call(kube_api, "POST", LEASES, body)
    assert answer[0] == code and message in answer[1]["message"], answer
    if code == 422:
        assert answer[1]["reason"] == "Invalid"


def test_an_update_is_validated_too(kube_api: FakeKubeAPI) -> None:
    call(kube_api, "POST", LEASES, lease("lock-a"))
    code, answer = call(kube_api, "PUT", f"{LEASES}/lock-a",
                        lease("lock-a", leaseDurationSeconds=-5))
    assert code == 422 and "must be greater than 0" in answer["message"]


# --- deletion: what becomes of the objects the deleted one owns -------------------------

CONFIGS = "/apis/stashq.io/v1alpha1/namespaces/demo/backupconfigurations"


def owned_sessions(api: FakeKubeAPI) -> tuple[str, int]:
    """Configuration "nightly" owning s-1 and s-2 (s-2 also owned by something else);
    s-3 owned by nobody. Its uid, and the cluster's version after."""
    _, owner = call(api, "POST", CONFIGS, {
        "apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
        "metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *"}})
    uid = owner["metadata"]["uid"]
    ref = {"apiVersion": "stashq.io/v1alpha1", "kind": "BackupConfiguration",
           "name": "nightly", "uid": uid, "controller": True}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "other-uid"}
    for name, refs in (("s-1", [ref]), ("s-2", [other, ref]), ("s-3", [])):
        body = session(name)
        body["metadata"] |= {"ownerReferences": refs} if refs else {}
        call(api, "POST", SESSIONS, body)
    return uid, api.cluster.version


def events_since(api: FakeKubeAPI, version: int) -> list[tuple[str, str]]:
    return [(e.type, e.object["metadata"]["name"]) for e in api.cluster.events
            if e.version > version]


def names(api: FakeKubeAPI) -> list[str]:
    return [s["metadata"]["name"] for s in call(api, "GET", SESSIONS)[1]["items"]]


def test_a_background_delete_collects_the_dependants_after_the_owner(
        kube_api: FakeKubeAPI) -> None:
    _, version = owned_sessions(kube_api)
    code, _ = call(kube_api, "DELETE", f"{CONFIGS}/nightly",
                   {"kind": "DeleteOptions", "propagationPolicy": "Background"})
    assert code == 200 and names(kube_api) == ["s-3"]
    assert events_since(kube_api, version) == [
        ("DELETED", "nightly"), ("DELETED", "s-1"), ("DELETED", "s-2")]
    _, version = owned_sessions(kube_api)
    call(kube_api, "DELETE", f"{CONFIGS}/nightly")  # no options: Background too
    assert names(kube_api) == ["s-3"]


def test_a_foreground_delete_collects_the_dependants_before_the_owner(
        kube_api: FakeKubeAPI) -> None:
    _, version = owned_sessions(kube_api)
    code, _ = call(kube_api, "DELETE", f"{CONFIGS}/nightly?propagationPolicy=Foreground")
    assert code == 200 and names(kube_api) == ["s-3"]
    assert events_since(kube_api, version) == [
        ("DELETED", "s-1"), ("DELETED", "s-2"), ("DELETED", "nightly")]


@pytest.mark.parametrize("options", [{"propagationPolicy": "Orphan"},
                                     {"orphanDependents": True}])
def test_an_orphan_delete_strips_the_owner_reference_and_keeps_the_dependants(
        kube_api: FakeKubeAPI, options: dict[str, Any]) -> None:
    _, version = owned_sessions(kube_api)
    code, _ = call(kube_api, "DELETE", f"{CONFIGS}/nightly", {"kind": "DeleteOptions", **options})
    assert code == 200 and names(kube_api) == ["s-1", "s-2", "s-3"]
    assert events_since(kube_api, version) == [
        ("MODIFIED", "s-1"), ("MODIFIED", "s-2"), ("DELETED", "nightly")]
    sessions = {s["metadata"]["name"]: s["metadata"] for s in call(kube_api, "GET", SESSIONS)[1]
                ["items"]}
    assert "ownerReferences" not in sessions["s-1"]
    assert [r["uid"] for r in sessions["s-2"]["ownerReferences"]] == ["other-uid"]
    assert sessions["s-1"]["generation"] == 1  # metadata only: the spec did not change


@pytest.mark.parametrize("options", [{"propagationPolicy": "orphan"},
                                     {"propagationPolicy": "Orphan", "orphanDependents": True}])
def test_delete_options_the_api_server_refuses_are_refused(
        kube_api: FakeKubeAPI, options: dict[str, Any]) -> None:
    owned_sessions(kube_api)
    code, answer = call(kube_api, "DELETE", f"{CONFIGS}/nightly", options)
    assert (code, answer["reason"]) == (422, "Invalid")
    assert names(kube_api) == ["s-1", "s-2", "s-3"]
    assert call(kube_api, "GET", f"{CONFIGS}/nightly")[0] == 200
