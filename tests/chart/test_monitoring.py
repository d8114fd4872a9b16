"""The chart's Grafana dashboard and Prometheus alerts, as a platform team installs them.

Both are off by default and switched on by values; the dashboard reaches Grafana's
sidecar through its label, the alerts pass ``promtool check rules`` and the story
tests of ``promtool/alerts.test.yaml``. That every metric name they read is one a real
worker pushes is ``tests/integration/test_metrics.py``'s to show.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.helm import Helm, Manifest, by_kind, component, pod_specs
from tests.chart.test_manifests import PREFIX, env_of
from tests.chart.test_render import KUBERNETES_VERSIONS, validate
from tests.support.promql import DASHBOARD, dashboard_exprs, metric_names

PROMTOOL_TESTS = Path(__file__).parent / "promtool" / "alerts.test.yaml"
ENABLED = ["monitoring.prometheusRule.enabled=true", "monitoring.grafanaDashboard.enabled=true"]
#: Seconds promtool gets (it answers in well under one).
PROMTOOL_TIMEOUT_S = 60


def rule_file(manifests: list[Manifest], directory: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file."""
    rule = component(manifests, "PrometheusRule", "alerts")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def run(promtool: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, input=stdin,
                            timeout=PROMTOOL_TIMEOUT_S)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def dashboard_of(manifests: list[Manifest]) -> dict[str, Any]:
    config_map = component(manifests, "ConfigMap", "dashboard")
    return dict(json.loads(config_map["data"]["stashq.json"]))


def test_neither_is_installed_by_default(helm: Helm) -> None:
    manifests = helm.template()
    assert not by_kind(manifests, "PrometheusRule")
    assert f"{PREFIX}-dashboard" not in by_kind(manifests, "ConfigMap")


def test_the_dashboard_reaches_grafanas_sidecar_by_its_label(helm: Helm) -> None:
    config_map = component(helm.template(set_values=ENABLED), "ConfigMap", "dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["stashq.json"]) == json.loads(DASHBOARD.read_text())
    relabelled = component(helm.template(set_values=[
        *ENABLED, "monitoring.grafanaDashboard.labels.grafana_dashboard=null",
        "monitoring.grafanaDashboard.labels.dashboards=stashq",
        "monitoring.grafanaDashboard.namespace=monitoring"]), "ConfigMap", "dashboard")
    assert "grafana_dashboard" not in relabelled["metadata"]["labels"]
    assert relabelled["metadata"]["labels"]["dashboards"] == "stashq"
    assert relabelled["metadata"]["namespace"] == "monitoring"


def test_the_dashboard_shows_what_the_issue_asks_and_invents_nothing(helm: Helm) -> None:
    dashboard = dashboard_of(helm.template(set_values=ENABLED))
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    assert {"Sessions by phase", "Last success age per configuration", "Session durations",
            "Dumped and stored bytes", "Repository size", "Queue length", "Binlog archive lag",
            "Point-in-time recovery window", "Last restore drill of each configuration"
            } <= titles
    read = {name for _, expr in dashboard_exprs(dashboard) for name in metric_names(expr)}
    assert {"stashq_binlog_archive_lag_seconds", "stashq_binlog_recoverable_to_time_seconds",
            "stashq_restoredrill_success", "stashq_restoredrill_last_success_time_seconds"} <= read
    # that each one is pushed for real: tests/integration/test_metrics.py
    graphs = [p for p in panels if p["type"] not in ("row", "text")]
    assert all(p.get("targets") and p["datasource"]["uid"] == "${datasource}" for p in graphs)


def test_the_rules_pass_promtool_check_and_their_unit_tests(helm: Helm, promtool: str,
                                                            tmp_path: Path) -> None:
    rules = rule_file(helm.template(set_values=ENABLED), tmp_path)
    assert "SUCCESS: 11 rules found" in run(promtool, "check", "rules", str(rules))
    shutil.copy(PROMTOOL_TESTS, tmp_path / PROMTOOL_TESTS.name)
    assert "SUCCESS" in run(promtool, "test", "rules", str(tmp_path / PROMTOOL_TESTS.name))


def test_the_thresholds_come_from_values(helm: Helm) -> None:
    manifests = helm.template(set_values=[
        *ENABLED, "monitoring.prometheusRule.overdueFactor=2",
        "monitoring.prometheusRule.lockHeldSeconds=3600",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack"])
    rule = component(manifests, "PrometheusRule", "alerts")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    exprs = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    assert "> 2 * stashq_backupconfiguration_schedule_interval_seconds" in \
        exprs["StashQBackupOverdue"]
    assert exprs["StashQRepositoryLockHeldTooLong"].endswith("> 3600")


def test_the_rule_schema_rejects_what_the_operator_would(helm: Helm) -> None:
    rule = component(helm.template(set_values=ENABLED), "PrometheusRule", "alerts")
    validate(rule, KUBERNETES_VERSIONS[-1])
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError, match="expr"):
        validate(rule, KUBERNETES_VERSIONS[-1])


def test_beat_pushes_its_sweeps_without_reaching_the_queue(helm: Helm) -> None:
    manifests = helm.template(set_values=["pushgateway.url=http://pg.monitoring:9091"])
    beat = env_of(pod_specs(manifests)[f"{PREFIX}-beat"]["containers"][0])
    assert beat["STASHQ_PUSHGATEWAY_URL"]["value"] == "http://pg.monitoring:9091"
    assert "STASHQ_BROKER_URL" not in beat
