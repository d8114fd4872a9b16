"""The chart's dashboard and alerts read what StashQ really pushes.

A real worker backs a database up through Redis to S3, restores it, archives the
server's binlog, runs a restore drill, and pushes to a real Pushgateway; its sweep
(every half second here) pushes the installation's numbers.
Then every metric name a dashboard panel or an alert reads must be among the names the
Pushgateway exposes, so renaming a metric in ``workers/metrics.py`` (or mistyping one in
the chart) fails here; and the pushed names pass ``promtool check metrics``.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import yaml

from devstack.resources import standard_setup
from devstack.servers import MariaDBServer, Pushgateway
from devstack.stack import Deploy, Deployment
from tests.chart.helm import Helm
from tests.integration.test_drills import run_drill
from tests.support.promql import chart_metric_names

#: Seconds the sweep after the backup gets to push (it runs every 0.5 s here).
SWEEP_WAIT_S = 30.0
SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]")


def exposed_names(text: str, namespace: str) -> set[str]:
    """The names of the samples in a /metrics page that this test's worker pushed: its
    sessions' (by namespace; the Pushgateway is shared by the whole test session) and
    the sweep groups' (the sweep that saw this test's repository was this worker's)."""
    ours = (f'namespace="{namespace}"', 'job="stashq-sweep"', 'job="stashq-queue"')
    return {m.group(1) for line in text.splitlines()
            if (m := SAMPLE.match(line)) and any(mark in line for mark in ours)}


def families(text: str, prefix: str) -> str:
    """The HELP, TYPE and sample lines of the metric families whose names start so."""
    return "".join(f"{line}\n" for line in text.splitlines()
                   if line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(prefix))


def swept_after(pushgateway: Pushgateway, namespace: str) -> str:
    """The /metrics page once a sweep has seen the test's repository."""
    wanted = f'namespace="{namespace}"'
    deadline = time.monotonic() + SWEEP_WAIT_S
    while True:
        text = pushgateway.metrics_text()
        if any(line.startswith("stashq_repository_lock_held_seconds{") and wanted in line
               for line in text.splitlines()):
            return text
        assert time.monotonic() < deadline, f"no sweep pushed the repository:\n{text[-3000:]}"
        time.sleep(0.5)


def drilled(deployment: Deployment, namespace: str, tmp_path: Path) -> dict[str, object]:
    """Apply RestoreDrill "weekly" of "nightly" and run it (``run_drill``)."""
    path = tmp_path / "drill.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "stashq.io/v1alpha1", "kind": "RestoreDrill",
        "metadata": {"name": "weekly"},
        "spec": {"schedule": "0 4 * * 0", "repository": {"name": "repo"},
                 "configurations": ["nightly"],
                 "scratch": {"ref": {"name": "db"}, "databasePrefix": "drill_"}}}))
    deployment.cli("apply", "-f", str(path), namespace=namespace, check=True)
    return run_drill(deployment, namespace)


def test_every_metric_the_chart_reads_is_one_a_real_worker_pushes(
        deploy: Deploy, pushgateway: Pushgateway, helm: Helm, promtool: str, namespace: str,
        binlog_mariadb: MariaDBServer, source_db: str, bucket: str, tmp_path: Path) -> None:
    deployment = deploy(mariadb=binlog_mariadb)
    deployment.start_worker()
    resources = standard_setup(tmp_path / "setup.yaml", deployment.s3, deployment.mariadb,
                               bucket, source_db)
    resources.write_text(resources.read_text() + "  binlogArchive:\n    intervalSeconds: 60\n")
    deployment.cli("apply", "-f", str(resources), namespace=namespace, check=True)
    backup = deployment.cli("backup", "nightly", "--wait", namespace=namespace, check=True)
    assert "Succeeded" in backup.stdout, backup.stdout
    restored = f"{source_db}_restored"
    restore = deployment.cli("restore", "--repository", "repo", "--target", "db", "--database",
                             restored, "--wait", namespace=namespace, check=True)
    assert "Succeeded" in restore.stdout, restore.stdout
    with deployment.mariadb.connect() as conn:
        conn.cursor().execute(f"DROP DATABASE `{restored}`")
        conn.cursor().execute(f"INSERT INTO `{source_db}`.t VALUES (2, UNIX_TIMESTAMP())")
    archived = deployment.cli("archive", "nightly", namespace=namespace, check=True)
    assert "recoverable from" in archived.stdout, archived.stdout
    assert drilled(deployment, namespace, tmp_path)["phase"] == "Passed"

    text = swept_after(pushgateway, namespace)
    used = chart_metric_names(helm)
    assert "stashq_backupconfiguration_schedule_interval_seconds" in used  # the test reads
    missing = {name: sorted(where) for name, where in used.items()
               if name not in exposed_names(text, namespace)}
    assert not missing, f"the chart reads metrics nobody pushes: {missing}"
    interval = [line for line in text.splitlines()
                if line.startswith("stashq_backupconfiguration_schedule_interval_seconds{")
                and f'namespace="{namespace}"' in line and 'invoker_name="nightly"' in line]
    assert [line.rsplit(" ", 1)[1] for line in interval] == ["86400"]  # "0 3 * * *": a day

    checked = subprocess.run([promtool, "check", "metrics"], input=families(text, "stashq_"),
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
