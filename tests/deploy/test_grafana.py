"""The fleet's Grafana dashboard (deploy/grafana/): provisioned by a file, reading the
datasource its provisioning file declares, every query valid PromQL (parsed by promtool,
skipped where Prometheus's tools are missing). Its metric names are checked against the
agent's /metrics in test_deploy_static.py and tests/e2e/test_metrics.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy import fleet

yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")

GRAFANA = fleet.DEPLOY / "grafana"
DASHBOARD = GRAFANA / "simedge-fleet.json"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "simedge.yml"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "simedge-prometheus.yml"
# What the issue asks the fleet's dashboard to show, by panel title.
WANTED = ("Sites", "SIMs online", "SMS per hour", "Delivery latency", "Outbox", "Alerts")


def test_the_dashboard_is_provisioned_from_a_file_and_reads_the_provisioned_datasource() -> None:
    (provider,) = yaml.safe_load(PROVIDER.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards")
    (datasource,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert datasource["type"] == "prometheus"

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "simedge-fleet"
    titles = [panel["title"] for panel in dashboard["panels"]]
    for wanted in WANTED:
        assert any(title.startswith(wanted) for title in titles), wanted
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(titles)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "site"
    # Every panel follows the site picker.
    assert all(
        'site=~"$site"' in expr
        for expr in fleet.dashboard_expressions().values()
        if "simedge_" in expr or "ALERTS" in expr
    )


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: each query as a recording rule, with Grafana's
    # $site variable as it expands for "All".
    queries = {
        where: expr.replace("$site", ".*")
        for where, expr in fleet.dashboard_expressions().items()
        if not expr.startswith("label_values(")
    }
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr}
        for number, expr in enumerate(queries.values())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    printed = fleet.promtool("check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in printed
