"""Every configuration example the documentation shows is loaded here, and the documented
slot label keys (the /dev/serial/by-path names) label the modems they name (issue 15)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "config.example.toml"
# The secrets every file must have; an example that shows them wins over these.
REQUIRED = {
    "onlinesim": {"base_url": "http://127.0.0.1:9/api/resellers", "api_key": "k3y"},
    "webhook": {"token": "t0ken-t0ken-t0ken-t0ken"},
}
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        ROOT / "hardware.md",
        *ROOT.glob("docs/**/*.md"),
        *ROOT.glob("deploy/**/*.md"),
    ]
)
# A fenced TOML block, indented or not (hardware.md's sit in a numbered list).
TOML_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```toml\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


def toml_examples() -> list[tuple[str, str]]:
    examples = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for number, match in enumerate(TOML_BLOCK.finditer(text), 1):
            indent = match["indent"]
            body = "".join(line.removeprefix(indent) for line in match["body"].splitlines(True))
            examples.append((f"{document.relative_to(ROOT)} #{number}", body))
    return examples


def merged(document: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {section: dict(keys) for section, keys in REQUIRED.items()}
    for section, keys in document.items():
        out.setdefault(section, {}).update(keys)
    return out


def test_the_documents_show_toml_examples() -> None:
    names = [name for name, _ in toml_examples()]
    assert any(name.startswith("hardware.md") for name in names)
    assert len(names) >= 2


@pytest.mark.parametrize(("where", "body"), toml_examples(), ids=lambda v: str(v)[:40])
def test_every_documented_toml_example_loads(where: str, body: str) -> None:
    document = tomllib.loads(body)
    loaded = config.from_mapping(merged(document), source=where, environ={})
    labels = document.get("site", {}).get("slot_labels", {})
    assert dict(loaded.site.slot_labels) == labels


def test_the_example_file_loads_with_its_commented_examples_switched_on() -> None:
    # Lines like `# "platform-...:1.0" = "A1"` are examples of table entries: uncommented
    # (and the [[store.block]] example with them) the file must still load.
    text = EXAMPLE.read_text(encoding="utf-8")
    switched_on = re.sub(
        r'^# ("[^"]+" = |\[\[store\.block\]\]$|(?:name|sender|text) = ")', r"\1", text, flags=re.M
    )
    # The [[store.block]] example stands for the empty `block = []` above it.
    switched_on = switched_on.replace("\nblock = []\n", "\n")
    assert switched_on != text
    document = tomllib.loads(switched_on)
    # The example points at secret files in /etc; this machine has the secrets inline.
    document["onlinesim"].update(api_key="k3y", api_key_file="")
    document["webhook"].update(token=REQUIRED["webhook"]["token"], token_file="")
    loaded = config.from_mapping(document, source=str(EXAMPLE), environ={})
    assert loaded.store.block[0].name == "operator account code"
    assert loaded.site.slot_labels == {
        "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.2:1.0": "A1"
    }


def ansible_label_examples() -> list[dict[str, str]]:
    """simedge_slot_labels mappings of the Ansible README and example vars, read as the
    role's template writes them into [site.slot_labels]."""
    found = []
    for path in [ROOT / "deploy/ansible/README.md", *ROOT.glob("deploy/ansible/**/*.yml")]:
        text = path.read_text(encoding="utf-8")
        for block in re.finditer(r"^simedge_slot_labels:\n((?:[ \t]+\S.*\n)+)", text, re.M):
            entries = re.findall(r'^\s+"([^"]+)":\s*"?([^"\n]+)"?$', block[1], re.M)
            found.append(dict(entries))
    return found


def test_the_ansible_examples_load() -> None:
    examples = ansible_label_examples()
    assert examples  # the README shows one
    for labels in examples:
        document = merged({"site": {"slot_labels": labels}})
        assert config.from_mapping(document, environ={}).site.slot_labels == labels


@pytest.mark.parametrize(
    "key",
    ["ttyUSB0", "/dev/ttyUSB2", "A3", "1.2.x", "usb-0:1.2", "x" * 300 + "-usb-0:1.2:1.0"],
)
def test_a_label_key_that_names_no_slot_is_an_error(key: str) -> None:
    document = merged({"site": {"slot_labels": {key: "A1"}}})
    with pytest.raises(
        ConfigError, match=r"\[site\] slot_labels: .*expected a /dev/serial/by-path"
    ):
        config.from_mapping(document, source="site.toml", environ={})
