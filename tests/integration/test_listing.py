"""`stashq sessions` and `stashq snapshots` for people (a table with start times) and
for programs (`-o json`, `-o yaml`: every field)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from devstack.resources import standard_setup
from devstack.stack import Stack, created


def test_sessions_and_snapshots_as_a_table_json_and_yaml(
        stack: Stack, namespace: str, database: str, bucket: str, tmp_path: Path) -> None:
    with stack.mariadb.connect() as conn:
        conn.cursor().execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
    setup = standard_setup(tmp_path / "setup.yaml", stack.s3, stack.mariadb, bucket, database)
    stack.cli("apply", "-f", str(setup), namespace=namespace, check=True)
    backup = created(stack.cli("backup", "nightly", "--wait", namespace=namespace,
                               check=True).stdout)

    table = stack.cli("sessions", namespace=namespace, check=True).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["KIND", "NAME", "PHASE", "STARTED (UTC)",
                                             "DURATION", "REASON"]
    assert re.match(rf"BackupSession\s+{backup}\s+Succeeded\s+\d{{4}}-\d\d-\d\d "
                    r"\d\d:\d\d:\d\d\s+[\d.]+s$", table[1]), table

    as_json = json.loads(stack.cli("sessions", "-o", "json", namespace=namespace,
                                   check=True).stdout)
    as_yaml = yaml.safe_load(stack.cli("sessions", "--output", "yaml", namespace=namespace,
                                       check=True).stdout)
    assert as_json == as_yaml
    [session] = as_json
    assert session["kind"] == "BackupSession" and session["metadata"]["name"] == backup
    assert session["spec"]["invoker"]["name"] == "nightly"
    assert session["status"]["phase"] == "Succeeded" and session["status"]["startTime"]

    snapshots = json.loads(stack.cli("snapshots", "repo", "-o", "json", namespace=namespace,
                                     check=True).stdout)
    assert snapshots == yaml.safe_load(stack.cli("snapshots", "repo", "-o", "yaml",
                                                 namespace=namespace, check=True).stdout)
    [snapshot] = snapshots
    assert snapshot["id"] == backup and snapshot["configuration"] == "nightly"
    assert snapshot["databases"] == [database] and snapshot["sizeBytes"] > 0
    assert snapshot["sizeBytes"] == sum(s["sizeBytes"] for s in snapshot["streams"])
