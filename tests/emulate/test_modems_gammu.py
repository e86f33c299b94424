"""An outside witness: Debian's gammu reads identities and SMS off the emulated modems.

gammu has its own AT driver with per-vendor paths (Huawei's ^CURC and ^PORTSEL, Quectel,
SIMCom); if it reads the right IMEI, IMSI and every SMS text, the emulator answers in the
forms real modules use, not just the forms our agent expects.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.protocol.pdu import encode_deliver
from tests.emulate import modems_fixtures
from tests.emulate.modems_fixtures import AtPort, HubThread

modem_hub = modems_fixtures.modem_hub  # the fixture, registered here
GAMMU = shutil.which("gammu")
pytestmark = pytest.mark.skipif(GAMMU is None, reason="gammu is not installed (apt install gammu)")

EMOJI_TEXT = "Ваш код: 4711 😀👍"
LONG_TEXT = "Concatenated SMS over the emulated modem, part of a long text. " * 4
PLAIN_TEXT = "plain [GSM] text with €"


PROFILES = ("sim800", "ec25", "huawei", "huawei3", "quad")


def test_gammu_identifies_and_reads_every_sms_on_each_profile(
    modem_hub: Callable[..., HubThread], tmp_path: Path
) -> None:
    assert GAMMU is not None
    runs = {}
    for profile in PROFILES:
        hub = modem_hub(count=1, profile=profile, seed=4)
        if hub.hub.slots[0].profile.autobaud:
            # An autobauding SIM800 ignores the first AT after power-up; gammu would wait
            # its 20 s timeout on it. A host that talked to it first has synced it.
            port = AtPort(hub.at_link(0))
            port.sync(autobaud=True)
            port.close()
        hub.call(hub.hub.inject, 0, "+79161234567", EMOJI_TEXT)
        hub.call(hub.hub.inject, 0, "VKcom", LONG_TEXT)
        hub.call(hub.hub.inject, 0, "+447700900123", PLAIN_TEXT)
        rc = tmp_path / f"{profile}.gammurc"
        rc.write_text(f"[gammu]\ndevice = {hub.at_link(0)}\nconnection = at115200\n")
        batch = tmp_path / f"{profile}.batch"
        # geteachsms links the parts of concatenated messages; batch keeps one connection.
        batch.write_text("identify\ngeteachsms\n")
        process = subprocess.Popen(  # the three run side by side: gammu paces itself slowly
            [GAMMU, "-c", str(rc), "batch", str(batch)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs[profile] = (hub, process)

    for profile, (hub, process) in runs.items():
        output, _ = process.communicate(timeout=60)
        modem = hub.hub.slots[0].modem
        assert modem.sim is not None
        assert process.returncode == 0, f"{profile}: {output}"
        assert f"IMEI                 : {modem.imei}" in output, profile
        assert f"SIM IMSI             : {modem.sim.imsi}" in output, profile
        assert EMOJI_TEXT in output, profile
        assert LONG_TEXT.rstrip() in output, profile
        assert PLAIN_TEXT in output, profile
        assert '"VKcom"' in output, profile
        assert '"+79161234567"' in output, profile
        assert "3 SMS sequences" in output, profile


@pytest.mark.parametrize("profile", ["ec25", "huawei"])
def test_gammu_reads_the_modem_memory_too(
    modem_hub: Callable[..., HubThread], tmp_path: Path, profile: str
) -> None:
    # Issue 15 item 3: SMS in "ME" (a full SIM spilled there, or the module receives there
    # by default) are where real ones are: gammu, which reads every folder, finds them.
    assert GAMMU is not None
    hub = modem_hub(count=1, profile=profile, seed=5)
    modem = hub.hub.slots[0].modem
    stamp = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    texts = {"SM": "on the SIM 1001", "ME": "in the modem 2002"}

    def store() -> None:
        assert modem.sim is not None
        for memory, storage in (("SM", modem.sim.storage), ("ME", modem.me)):
            (pdu,) = encode_deliver(texts[memory], "+79161234567", timestamp=stamp)
            assert storage.store(pdu) is not None

    hub.call(store)
    rc = tmp_path / "gammurc"
    rc.write_text(f"[gammu]\ndevice = {hub.at_link(0)}\nconnection = at115200\n")
    result = subprocess.run(
        [GAMMU, "-c", str(rc), "getallsms"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert texts["SM"] in result.stdout
    assert texts["ME"] in result.stdout
    assert "2 SMS parts in 2 SMS sequences" in result.stdout
    assert "phone memory" in result.stdout  # gammu says where it found the second
