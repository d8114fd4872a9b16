"""The metric names of PromQL expressions, as the chart's tests read them."""

from __future__ import annotations

import pytest

from tests.support.promql import metric_names

CASES = [
    ("stashq_backupsession_success == 0", {"stashq_backupsession_success"}),
    ('time() - stashq_a{namespace=~"$namespace", x="a b(c)"} > 1.5 * stashq_b',
     {"stashq_a", "stashq_b"}),
    ("sum by (session_kind, phase) (stashq_sessions)", {"stashq_sessions"}),
    ("sum(delta(q[$__rate_interval])) > 0 and on() max(max_over_time(u[15m])) == 0",
     {"q", "u"}),
    ('time() - push_time_seconds{job=~"stashq-sweep|stashq-queue"}', {"push_time_seconds"}),
    ("a / on (job, instance) group_left (name) b offset 5m", {"a", "b"}),
    ("rate(x_total[5m:1m]) > 1e3", {"x_total"}),
    ("vector(1)", set()),
]


@pytest.mark.parametrize("expr, names", CASES, ids=[c[0][:40] for c in CASES])
def test_the_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
