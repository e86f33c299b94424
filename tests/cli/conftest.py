"""Fixtures for the command tests: a configuration file on a data folder in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A valid configuration: data in ``tmp_path/data``, the control socket in tmp_path
    (no agent listens there, so commands take the agent-down path)."""
    path = tmp_path / "simedge.toml"
    path.write_text(
        '[onlinesim]\nbase_url = "http://127.0.0.1:9/api"\napi_key = "k"\n'
        '[webhook]\ntoken = "0123456789abcdef0123"\n[site]\ndata_dir = "data"\n'
        f'[control]\nsocket = "{tmp_path / "control.sock"}"\n'
    )
    return path
