"""The metric names a PromQL expression reads, and the expressions the chart ships.

Not a PromQL parser: strings, label matchers, ranges and the label lists of ``by``,
``on`` and friends are cut out, then every remaining identifier that is neither a
function (followed by ``(``), a keyword, nor part of a number or duration is a metric
name. ``tests/unit/test_promql.py`` holds it to a table of the shapes the chart uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.chart.helm import CHART, Helm

KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and",
                      "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*")
DASHBOARD = CHART / "dashboards" / "stashq.json"


def metric_names(expr: str) -> set[str]:
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    return {m.group() for m in _IDENTIFIER.finditer(text)
            if m.group() not in KEYWORDS and not text[m.end():].lstrip().startswith("(")}


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every panel target and query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f'panel "{panel["title"]}"', target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f'variable "{variable["name"]}"', re.sub(r"^label_values\((.*),[^,]*\)$",
                                                           r"\1", text)


def rule_exprs(helm: Helm) -> Iterator[tuple[str, str]]:
    """(where, expr) of every rule of the chart's PrometheusRule."""
    manifests = helm.template(set_values=["monitoring.prometheusRule.enabled=true"])
    rule = next(m for m in manifests if m["kind"] == "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            yield f'alert {r.get("alert") or r.get("record")}', str(r["expr"])


def chart_metric_names(helm: Helm) -> dict[str, set[str]]:
    """Each metric name the dashboard and the alerts read, and where."""
    dashboard = json.loads(DASHBOARD.read_text())
    used: dict[str, set[str]] = {}
    for where, expr in [*dashboard_exprs(dashboard), *rule_exprs(helm)]:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used
