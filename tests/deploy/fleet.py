"""The metric names the fleet's files use (alert rules, Grafana dashboards) and those an
agent's /metrics exports: the tests check the first are among the second, statically
(tests/deploy/test_deploy_static.py) and against a real agent (tests/e2e/test_metrics.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "simedge-alerts.yml"
DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
METRIC_NAME = re.compile(r"\bsimedge_[a-z_]+")


def promtool(*args: str, cwd: Path) -> str:
    """Run Prometheus's promtool (Debian package prometheus; .ci/run installs it) and
    return what it printed; the test fails on its complaint, skips where it is missing."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    result = subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rule_expressions() -> dict[str, str]:
    """Alert name -> its PromQL."""
    document = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def _strings_under(node: Any, key: str) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key and isinstance(value, str):
                yield value
            else:
                yield from _strings_under(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _strings_under(item, key)


def dashboard_expressions() -> dict[str, str]:
    """ "dashboard file: panel title #n" -> its PromQL, and the template variables' queries."""
    found = {}
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for number, expr in enumerate(_strings_under(panel["targets"], "expr"), 1):
                found[f"{path.name}: {panel['title']} #{number}"] = expr
        for variable in dashboard["templating"]["list"]:
            found[f"{path.name}: variable {variable['name']}"] = variable["definition"]
    return found


def names_used() -> dict[str, set[str]]:
    """Where (alert, or dashboard panel) -> the simedge_ metric names its query reads."""
    return {
        where: set(METRIC_NAME.findall(expr))
        for where, expr in {**rule_expressions(), **dashboard_expressions()}.items()
    }


def exported_names(exposition: str) -> set[str]:
    """Every sample name an exposition can carry, from its # TYPE lines (a family that has
    no sample yet, such as a public URL never set, is declared all the same)."""
    exported = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", exposition, re.MULTILINE):
        exported.add(name)
        if kind == "counter":
            exported.add(f"{name}_total")
        if kind == "histogram":
            exported.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return exported
