"""Block rules through a running agent (its real control socket, and `simedge block`), and
`simedge block` with the agent down (straight into the database)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent import config as config_module
from agent.cli import main
from agent.control.client import ControlClient
from agent.errors import ControlError
from agent.store import Store
from tests.cli.test_manage import write_config
from tests.e2e.site import StartSite
from tests.store.conftest import ingest, pdus

CONFIGURED_RULE = {"name": "bank", "sender": "(?i)^sberbank$"}


async def test_list_add_preview_and_remove_over_the_control_socket(start_site: StartSite) -> None:
    site = await start_site(count=2, profile="sim800", store={"block": [CONFIGURED_RULE]})
    await site.ready_modems(2)
    async with ControlClient(site.config.control_socket) as client:
        assert await client.request("block_rules") == [
            {**CONFIGURED_RULE, "text": None, "source": "config", "timing_out": False}
        ]
        for modem, text in enumerate(["VK code 1", "VK code 2", "Balance 5 RUB"]):
            site.hub.inject(modem % 2, "VKcom", text)
        await site.until(lambda: len(site.standin.state.messages) == 3)

        trial = await client.request("preview_block_rule", text="VK code")
        assert trial["summary"] == "would have withheld 2 of the last 3 SMS"
        assert trial["withholds_most"]
        with pytest.raises(ControlError, match="'vk' would have withheld 2 of the last 3 SMS"):
            await client.request("add_block_rule", name="vk", text="VK code")
        with pytest.raises(ControlError, match="block rule 'bad' text: is not a regular"):
            await client.request("add_block_rule", name="bad", text="(unclosed")
        with pytest.raises(ControlError, match="'bank' comes from the configuration file"):
            await client.request("remove_block_rule", name="bank")

        added = await client.request("add_block_rule", name="vk", text="VK code", force=True)
        assert added == "block rule vk added; it would have withheld 2 of the last 3 SMS"
        site.hub.inject(0, "VKcom", "VK code 3")
        site.hub.inject(0, "+79161234567", "hello")  # same modem: read after VK code 3
        await site.until(lambda: len(site.standin.state.messages) == 4)
        assert "VK code 3" not in {m.text for m in site.standin.state.messages}
        hello, vk_code = await client.request("messages", limit=2)
        assert hello["text"] == "hello"
        assert (vk_code["text"], vk_code["state"], vk_code["blocked_rule"]) == (
            "VK code 3",
            "blocked",
            "vk",
        )

        assert await client.request("remove_block_rule", name="vk") == "block rule vk removed"
        assert [rule["name"] for rule in await client.request("block_rules")] == ["bank"]
        site.hub.inject(0, "VKcom", "VK code 4")
        await site.until(lambda: "VK code 4" in {m.text for m in site.standin.state.messages})


async def test_simedge_block_against_the_running_agent(
    start_site: StartSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = await start_site(count=1, profile="sim800")
    await site.ready_modems(1)
    config = str(write_config(tmp_path, site.config.onlinesim.base_url))
    site.hub.inject(0, "VKcom", "VK code 1")
    await site.until(lambda: len(site.standin.state.messages) == 1)

    def block(*words: str) -> int:
        return main(["block", *words, "--config", config])

    assert await asyncio.to_thread(block, "add", "codes", "--text", r"(?i)access code \d+") == 0
    out = capsys.readouterr().out
    assert "rule 'codes' would have withheld 0 of the last 1 SMS" in out
    assert "block rule codes added" in out

    # Not a terminal: a rule that would withhold most SMS is refused without --yes.
    assert await asyncio.to_thread(block, "add", "all", "--text", ".") == 1
    captured = capsys.readouterr()
    assert "would have withheld 1 of the last 1 SMS" in captured.out
    assert "'all' not added (give --yes to add it anyway)" in captured.err
    assert await asyncio.to_thread(block, "add", "all", "--text", ".", "--yes") == 0
    capsys.readouterr()

    assert await asyncio.to_thread(block, "list") == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing == [
        r"codes  sender any  text (?i)access code \d+  (added at run time)",
        "all  sender any  text .  (added at run time)",
    ]
    assert await asyncio.to_thread(block, "remove", "all") == 0
    assert await asyncio.to_thread(block, "remove", "all") == 1
    assert "no block rule named 'all' (rules: 'codes')" in capsys.readouterr().err
    assert [rule.name for rule in site.agent.store.block_rules] == ["codes"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["add", "x", "--text", ".*"], "block rule 'x' text: matches an empty value"),
        (["add", "x"], "block rule 'x': give a sender or a text pattern"),
        (["add", "x", "--sender", "+7916"], "block rule 'x' sender: is not a regular expression"),
    ],
)
def test_a_bad_rule_is_refused_before_anything_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], words: list[str], message: str
) -> None:
    config = write_config(tmp_path)
    assert main(["block", *words, "--config", str(config)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # nothing was opened


async def test_simedge_block_with_the_agent_down_edits_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text() + '[[store.block]]\nname = "bank"\nsender = "(?i)^sberbank$"\n'
    )
    database = config_module.load(config).database
    store = await Store.open(database)
    await ingest(store, pdus("hello")[0])
    await store.close()

    def block(*words: str) -> int:
        return main(["block", *words, "--config", str(config)])

    assert await asyncio.to_thread(block, "add", "lottery", "--text", "(?i)you won") == 0
    out = capsys.readouterr().out
    assert "the agent is not running" in out
    assert "the agent takes the change when it starts" in out
    assert await asyncio.to_thread(block, "list") == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "bank  sender (?i)^sberbank$  text any  (configuration file)",
        "lottery  sender any  text (?i)you won  (added at run time)",
    ]
    assert await asyncio.to_thread(block, "remove", "bank") == 1
    assert "remove it from [[store.block]] there" in capsys.readouterr().err

    store = await Store.open(database)
    try:
        assert [rule.name for rule in store.block_rules] == ["lottery"]
        assert (await ingest(store, pdus("You WON")[0], index=2)).blocked
    finally:
        await store.close()
