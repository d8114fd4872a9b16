"""What garbd's log says went wrong, and what the AppBinding says the cluster is.

The log lines are garbd 26.4's own, as seen against a real cluster on loopback
(tests/integration/test_galera.py runs the same cases end to end).
"""

from __future__ import annotations

import pytest

from workers.engines.galera import (
    GaleraCluster,
    cluster_of,
    garbd_failure,
    selected_donor,
)
from workflows.errors import InvalidResource
from workflows.parsing import parse_resource
from workflows.resources import AppBinding

CLUSTER = GaleraCluster("gcomm://db-0.db:4567,db-1.db,10.0.0.3:4444", "px", "mariabackup")
T = "2026-11-27 04:46:29.356"

UNREACHABLE = f"""{T}  INFO: gcomm: connecting to group 'px', peer 'db-0.db:4567'
{T}  INFO: Failed to establish connection: Connection refused
{T}  INFO: Failed to establish connection: Connection refused
{T} ERROR: failed to open gcomm backend connection: 110: failed to reach primary view
{T} FATAL: Exception in creating receive loop: Failed to open connection to group
"""
WRONG_GROUP = f"""{T}  INFO: gcomm: connecting to group 'other', peer '127.0.0.1:24567'
{T}  INFO: No nodes coming from primary view, primary view is not possible
{T} ERROR: failed to open gcomm backend connection: 110: failed to reach primary view
{T} FATAL: Exception in creating receive loop: Failed to open connection to group
"""
NO_DONOR = f"""{T}  WARN: Member 1.0 (garb) requested state transfer from 'n9', but it is \
impossible to select State Transfer donor: Requested donor is not available
{T} FATAL: State transfer request failed: -113 (No route to host)
"""
ACCEPTED = f"""{T}  INFO: Sending state transfer request: 'mariabackup:127.0.0.1:24444/x//1'
{T}  INFO: Member 1.0 (garb) requested state transfer from 'n1'. Selected 0.0 (n1)(SYNCED) as donor.
{T}  INFO: 1.0 (garb): State transfer from 0.0 (n1) complete.
"""


@pytest.mark.parametrize(("log", "expected"), [
    (UNREACHABLE, "Galera cluster at gcomm://db-0.db:4567,db-1.db,10.0.0.3:4444 is unreachable: "
                  "garbd could not connect to any node (Connection refused)"),
    (WRONG_GROUP, 'could not join Galera group "px" at gcomm://db-0.db:4567,db-1.db,10.0.0.3:4444 '
                  "within 30 s: the nodes did not accept garbd into that group; the cluster name "
                  "is likely wrong (check spec.parameters.group)"),
    (NO_DONOR, 'donor "n9" is not a synced member of Galera group "px"'),
    (ACCEPTED, None),
])
def test_garbd_log_names_the_failure(log: str, expected: str | None) -> None:
    failure = garbd_failure(log, CLUSTER, "n9", 30)
    if expected is None:
        assert failure is None
    else:
        assert failure is not None and failure.startswith(expected)


def test_the_chosen_donor_is_read_from_the_log() -> None:
    assert selected_donor(ACCEPTED) == "n1"
    assert selected_donor(WRONG_GROUP) is None


def test_gcomm_hosts_default_to_the_galera_port() -> None:
    assert CLUSTER.hosts() == [("db-0.db", 4567), ("db-1.db", 4567), ("10.0.0.3", 4444)]
    assert GaleraCluster("gcomm://a?gmcast.listen_addr=tcp://0.0.0.0:4444", "g",
                         "m").hosts() == [("a", 4567)]


def binding(parameters: dict[str, object]) -> AppBinding:
    resource = parse_resource({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "px"},
        "spec": {"type": "kubedb.com/perconaxtradb", "clientConfig": {"url": "tcp(px:3306)/"},
                 "secret": {"name": "px-auth"}, "parameters": parameters}})
    assert isinstance(resource, AppBinding)
    return resource


def test_cluster_coordinates_come_from_the_appbinding_as_kubedb_writes_them() -> None:
    cluster = cluster_of(binding({"apiVersion": "config.kubedb.com/v1alpha1",
                                  "kind": "GaleraArbitratorConfiguration",
                                  "address": "gcomm://px-0.px-pods,px-1.px-pods", "group": "px",
                                  "sstMethod": "xtrabackup-v2"}), "mariabackup")
    assert cluster == GaleraCluster("gcomm://px-0.px-pods,px-1.px-pods", "px", "xtrabackup-v2")
    assert cluster_of(binding({"address": "gcomm://a", "group": "g"}),
                      "mariabackup").sst_method == "mariabackup"


@pytest.mark.parametrize(("parameters", "message"), [
    ({"group": "px"}, 'AppBinding "px": spec.parameters.address: is required for a cluster backup'),
    ({"address": "gcomm://a"}, 'AppBinding "px": spec.parameters.group: is required'),
    ({"address": "tcp://a", "group": "g"}, 'spec.parameters.address: "tcp://a" is not a gcomm://'),
])
def test_missing_cluster_coordinates_name_the_field(parameters: dict[str, object],
                                                    message: str) -> None:
    with pytest.raises(InvalidResource, match=message.replace("(", r"\(")):
        cluster_of(binding(parameters), "mariabackup")
