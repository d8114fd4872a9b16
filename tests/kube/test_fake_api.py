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
