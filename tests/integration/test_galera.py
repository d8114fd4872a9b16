"""A Galera cluster's story: back it up through garbd while it takes writes, restore the
snapshot into one data directory per replica, start the restored cluster, and find it
equal to the source at the backup's position. Then the ways a cluster backup fails,
each with a reason that names the culprit.

The cluster is three MariaDB Galera nodes on loopback (`devstack/servers/galera.py`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.compare import describe
from devstack.resources import s3_repository, secret
from devstack.sample import create_sample
from devstack.servers import BinaryMissing, free_port
from devstack.servers.galera import GaleraCluster, GaleraNode
from devstack.stack import Stack, created, wait_restore
from workers.state.redis import RedisStore
from workflows.resources import BackupSession

pytestmark = pytest.mark.slow
#: Seconds to wait for a RestoreSession applied from a manifest.
RESTORE_WAIT_S = 180
#: Configuration changes (garbd joining and leaving) take seqnos too, besides the writes.
MAX_CONFIGURATION_CHANGES = 4


@pytest.fixture(scope="module")
def galera(servers_dir: Path) -> Iterator[GaleraCluster]:
    yield from running(GaleraCluster(servers_dir / "galera"))


def running(cluster: GaleraCluster) -> Iterator[GaleraCluster]:
    """Start ``cluster`` for a fixture (skip, in CI fail, if Galera is missing), stop it."""
    try:
        cluster.start()
    except BinaryMissing as e:
        cluster.stop()
        if __import__("os").environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    except BaseException:
        cluster.stop()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


def cluster_resources(path: Path, stack: Stack, galera: GaleraCluster, bucket: str, *,
                      address: str | None = None, group: str | None = None,
                      sst_method: str = "mariabackup", **params: str) -> Path:
    """Secrets, AppBinding "cluster" as KubeDB writes it for a Galera cluster, Repository
    "repo", BackupConfiguration "nightly" with the cluster backup Task."""
    params = {"connectTimeoutSeconds": "60", **params}
    param_lines = "".join(f"      - {{name: {k}, value: {json.dumps(v)}}}\n"
                          for k, v in params.items())
    node = galera.nodes[0]
    docs = [
        secret("db-auth", username="root", password=""),
        secret("s3-auth", AWS_ACCESS_KEY_ID=stack.s3.access_key,
               AWS_SECRET_ACCESS_KEY=stack.s3.secret_key),
        f"""apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {{name: cluster}}
spec:
  type: kubedb.com/mariadb
  version: "10.11"
  clientConfig: {{url: "tcp(127.0.0.1:{node.port})/"}}
  secret: {{name: db-auth}}
  parameters:
    apiVersion: config.kubedb.com/v1alpha1
    kind: GaleraArbitratorConfiguration
    address: "{address or galera.address}"
    group: "{group or galera.group}"
    sstMethod: {sst_method}
""",
        s3_repository("repo", stack.s3, bucket, "s3-auth"),
        f"""apiVersion: stashq.io/v1alpha1
kind: BackupConfiguration
metadata: {{name: nightly}}
spec:
  schedule: "0 3 * * *"
  repository: {{name: repo}}
  target:
    ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: cluster}}
  task:
    name: mariadb-galera-backup
    params:
{param_lines}""",
    ]
    path.write_text("---\n".join(docs))
    return path


def restore_session(path: Path, data_dir: str, replicas: int = 3) -> Path:
    path.write_text(f"""apiVersion: stashq.io/v1alpha1
kind: RestoreSession
metadata: {{name: restore-cluster}}
spec:
  repository: {{name: repo}}
  target:
    ref: {{apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: cluster}}
    rules: [{{snapshots: [latest]}}]
  task:
    name: mariadb-galera-restore
    params:
      - {{name: dataDir, value: "{data_dir}"}}
      - {{name: replicas, value: "{replicas}"}}
""")
    return path


class Writer:
    """Inserts rows 1, 2, 3, ... into `w.t`, one transaction (one Galera seqno) each."""

    def __init__(self, node: GaleraNode) -> None:
        self.node, self.rows = node, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="galera-writer", daemon=True)

    def _run(self) -> None:
        with self.node.connect() as conn, conn.cursor() as cur:
            while not self._stop.is_set():
                row = self.rows + 1
                cur.execute("INSERT INTO w.t VALUES (%s, %s)", (row, f"row {row}"))
                self.rows = row

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def rows_digest(conn: Any, up_to: int) -> tuple[int, int]:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT(id, ':', v))), 0) FROM w.t "
                    "WHERE id <= %s", (up_to,))
        count, crc = cur.fetchone()
    return int(count), int(crc)


def s3_json(stack: Stack, bucket: str, suffix: str) -> dict[str, Any]:
    objects = stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    (key,) = [o["Key"] for o in objects if o["Key"].endswith(suffix)]
    body = stack.s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    return dict(json.loads(body))


def test_cluster_backup_through_garbd_while_writing_restores_per_replica(
        stack: Stack, galera: GaleraCluster, namespace: str, bucket: str,
        tmp_path: Path) -> None:
    source, donor = galera.nodes[0], galera.nodes[1]
    with source.connect() as conn, conn.cursor() as cur:
        for db in ("shop", "w"):
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
        create_sample(conn, "shop", customers=300)
        cur.execute("CREATE DATABASE w")
        cur.execute("CREATE TABLE w.t (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)")
        base_seqno = int(GaleraNode.status(conn, "wsrep_last_committed"))
        uuid = GaleraNode.status(conn, "wsrep_cluster_state_uuid")
    resources = cluster_resources(tmp_path / "cluster.yaml", stack, galera, bucket,
                                  donor=donor.name)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)

    with Writer(source) as writer:
        time.sleep(1)
        rows_before = writer.rows
        started = time.monotonic()
        backup = stack.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
        backup_s = time.monotonic() - started
        time.sleep(0.5)
    name = created(backup.stdout)
    status = RedisStore.from_url(stack.redis_url).get(BackupSession, name, namespace).status
    assert status["phase"] == "Succeeded", status
    snapshot = status["snapshot"]
    assert snapshot["kind"] == "physical" and snapshot["method"] == "galera-sst"
    position = snapshot["position"]
    assert position["clusterUuid"] == uuid
    assert base_seqno < position["seqno"] <= position["endSeqno"]
    manifest = s3_json(stack, bucket, f"snapshots/{name}.json")
    assert [s["name"] for s in manifest["streams"]] == ["galera-info.xbstream.zst",
                                                       "datadir.xbstream.zst"]
    assert manifest["kind"] == "physical" and manifest["engine"] == "mariadb"
    print(f"\ngalera backup: {snapshot['rawSize']} bytes streamed, {snapshot['totalSize']} "
          f"stored, session {backup_s:.1f} s, {writer.rows - rows_before} rows written meanwhile")

    restored = tmp_path / "restored"
    session = restore_session(tmp_path / "restore.yaml", f"{restored}/{{replica}}/data")
    stack.cli("apply", "-f", str(session), namespace=namespace, check=True)
    result = wait_restore(stack, namespace, "restore-cluster", RESTORE_WAIT_S)
    assert result["phase"] == "Succeeded", result.get("reason")
    replicas = result["replicas"]
    assert sorted(replicas) == ["0", "1", "2"]
    positions = {r["position"] for r in replicas.values()}
    assert len(positions) == 1
    restored_uuid, _, seqno_text = positions.pop().rpartition(":")
    restored_seqno = int(seqno_text)
    assert restored_uuid == uuid
    assert position["seqno"] <= restored_seqno <= position["endSeqno"]
    assert result["bootstrap"]["replica"] == 0
    grastates = [(restored / str(i) / "data" / "grastate.dat").read_text() for i in range(3)]
    assert "safe_to_bootstrap: 1" in grastates[0]
    assert all("safe_to_bootstrap: 0" in g and f"seqno:   {restored_seqno}" in g
               for g in grastates[1:])

    copy = GaleraCluster(tmp_path / "restored-cluster", group=galera.group,
                         node_dirs=[restored / str(i) for i in range(3)])
    try:
        copy.start()
        # The donor's copy: there, replicated events are SLAVESIDE_DISABLED, as Galera marks them.
        with donor.connect() as src:
            expected = describe(src, "shop")
            for node in copy.nodes:
                with node.connect() as conn:
                    assert GaleraNode.status(conn, "wsrep_cluster_state_uuid") == uuid
                    assert describe(conn, "shop") == expected
                    with conn.cursor() as cur:
                        cur.execute("SELECT COUNT(*), MAX(id) FROM w.t")
                        count, top = cur.fetchone()
                    assert count == top  # rows 1..top, no gap: a consistent cut
                    assert rows_before < top < writer.rows  # taken while writes ran
                    assert rows_digest(conn, top) == rows_digest(src, top)
                    # each write is one seqno: the rows match the position the data stands at
                    assert 0 <= restored_seqno - base_seqno - top <= MAX_CONFIGURATION_CHANGES
    finally:
        copy.stop()


@pytest.mark.parametrize("case", ["unreachable", "wrong group", "no such donor", "sst refused"])
def test_cluster_backup_failures_name_the_culprit(stack: Stack, galera: GaleraCluster,
                                                  namespace: str, bucket: str, tmp_path: Path,
                                                  case: str) -> None:
    nowhere = f"gcomm://127.0.0.1:{free_port()}"
    options: dict[str, Any] = {
        "unreachable": {"address": nowhere},
        "wrong group": {"group": "not-this-cluster", "joinTimeoutSeconds": "3"},
        "no such donor": {"donor": "n9"},
        "sst refused": {"sst_method": "xtrabackup-v2", "connectTimeoutSeconds": "5"},
    }[case]
    expected = {
        "unreachable": f"Galera cluster at {nowhere} is unreachable: no node accepts "
                       f"connections (127.0.0.1:{nowhere.rsplit(':', 1)[1]}: Connection refused)",
        "wrong group": 'could not join Galera group "not-this-cluster"',
        "no such donor": f'donor "n9" is not a synced member of Galera group "{galera.group}"',
        "sst refused": "accepted the state transfer request but never sent the galera info",
    }[case]
    resources = cluster_resources(tmp_path / "cluster.yaml", stack, galera, bucket, **options)
    stack.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    result = stack.cli("backup", "nightly", "--wait", namespace=namespace)
    assert result.returncode == 8, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr
    if case == "sst refused":
        assert "'xtrabackup-v2'" in result.stderr and "WSREP_SST" in result.stderr
    objects = stack.s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in objects if "/snapshots/" in o["Key"]] == []
    assert stack.s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
