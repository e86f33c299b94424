"""The Ansible playbook deploy/ansible/prometheus.yml (role simedge_prometheus) writes the
central Prometheus's file_sd target files from the inventory: run for real here against
a local folder, then the files are read back and checked by promtool with
deploy/prometheus/prometheus.yml (each skipped, saying so, where its tool is missing).
Its syntax check is with the other playbooks' in test_deploy_static.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML comes with ansible-core")
from tests.deploy import fleet  # noqa: E402 (needs PyYAML)
from tests.deploy.test_deploy_static import _tool  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "deploy" / "ansible"
PROMETHEUS = REPO / "deploy" / "prometheus"

INVENTORY = """\
[simedge_sites]
site-berlin-01   ansible_host=10.8.0.11
site-berlin-02 ansible_host=10.8.0.12 simedge_site_name=berlin-2 simedge_webhook_listen=:9100
site-tallinn-01  ansible_host=10.8.0.31 simedge_relay_port=20001 simedge_relay_site=tallinn
site-narva-01    ansible_host=10.8.0.41 simedge_metrics_push=true

[simedge_relay]
relay-01         ansible_host=203.0.113.10 simedge_relay_domain=relay.example.net

[simedge_prometheus]
localhost        ansible_connection=local
"""


def run_playbook(tmp_path: Path, targets: Path) -> None:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(INVENTORY)
    result = subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            f"simedge_prometheus_targets_dir={targets}",
            "-e",
            "ansible_become=false",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(ANSIBLE / "prometheus.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_inventory_becomes_one_target_file_per_scraped_site(tmp_path: Path) -> None:
    targets = tmp_path / "prometheus" / "targets"
    targets.mkdir(parents=True)
    (targets / "simedge-gone-site.yml").write_text("- targets: ['10.9.9.9:8085']\n")
    (targets / "other-job.yml").write_text("- targets: ['10.9.9.9:9100']\n")
    run_playbook(tmp_path, targets)

    files = {path.name: yaml.safe_load(path.read_text()) for path in targets.iterdir()}
    assert files == {
        "other-job.yml": [{"targets": ["10.9.9.9:9100"]}],  # not ours: left alone
        "simedge-site-berlin-01.yml": [
            {"targets": ["10.8.0.11:8085"], "labels": {"site": "site-berlin-01"}}
        ],
        "simedge-berlin-2.yml": [{"targets": ["10.8.0.12:9100"], "labels": {"site": "berlin-2"}}],
        "simedge-site-tallinn-01.yml": [
            {
                "targets": ["relay.example.net:443"],
                "labels": {
                    "site": "site-tallinn-01",
                    "__scheme__": "https",
                    "__metrics_path__": "/tallinn/metrics",
                },
            }
        ],
        # site-narva-01 pushes (agent-remote-write.yml): no target; the removed site's
        # file is gone.
    }

    # The files are what deploy/prometheus/prometheus.yml reads: promtool checks both.
    server = tmp_path / "prometheus"
    shutil.copy(PROMETHEUS / "prometheus.yml", server / "prometheus.yml")
    shutil.copy(PROMETHEUS / "simedge-alerts.yml", server / "simedge-alerts.yml")
    fleet.promtool("check", "config", "prometheus.yml", cwd=server)
