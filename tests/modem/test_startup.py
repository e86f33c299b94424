"""Start-up, identification and own-number recipes: against scripted peers on real ptys
(for refusals the emulated modules do not make) and against the emulated modems."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest

from agent.config import UssdRecipeConfig
from agent.emulate.modems.sim import pack_gsm7_hex
from agent.modem import own_number, startup, ussd, vendors
from agent.modem.session import AtSession
from agent.modem.vendors import GENERIC, HUAWEI, QUECTEL, SIMCOM, VendorProfile
from agent.protocol.urc import UssdReceived
from agent.status import NumberSource, SimState
from tests.modem.conftest import Reply, ScriptedPeer, StartHub, at_link

MakePeer = Callable[[dict[str, Reply]], ScriptedPeer]
REFUSED = b"\r\n+CMS ERROR: 303\r\n"
ERROR = b"\r\nERROR\r\n"


def answer(*lines: str) -> bytes:
    return "".join(f"\r\n{line}\r\n" for line in lines).encode() + b"\r\nOK\r\n"


def generic_modem(**overrides: Reply) -> dict[str, Reply]:
    """A module of no known vendor with a SIM: what initialise asks, answered."""
    script: dict[str, Reply] = {
        "AT+CGMI": answer("ACME Wireless"),
        "AT+CGMM": answer("X1"),
        "AT+CGMR": answer("X1.0.3"),
        "AT+CGSN": answer("490154203237518"),
        "AT+CPIN?": answer("+CPIN: READY"),
        "AT+CPMS?": answer('+CPMS: "SM",2,20,"SM",2,20,"SM",2,20'),
    }
    script.update(overrides)
    return script


async def initialise_on(peer: ScriptedPeer) -> startup.ModemSetup:
    """What :func:`startup.initialise` sets up on ``peer``'s port."""
    session = await AtSession.open(peer.device, command_timeout=1)
    try:
        return await startup.initialise(session)
    finally:
        await session.close()


async def test_cnmi_falls_back_to_a_form_the_modem_accepts(scripted_peer: MakePeer) -> None:
    peer = scripted_peer(
        generic_modem(**{"AT+CNMI=2,1,0,0,0": REFUSED, "AT+CNMI=2,1,0,0": REFUSED})
    )
    setup = await initialise_on(peer)
    assert setup.vendor is GENERIC
    assert setup.imei == "490154203237518"
    assert setup.sim_state is SimState.READY
    assert setup.cnmi == startup.CnmiChoice("AT+CNMI=2,1")
    assert setup.storage is not None
    assert (setup.storage.used, setup.storage.total) == (2, 20)
    assert "AT+CMGF=0" in peer.lines
    assert 'AT+CPMS="SM","SM","SM"' in peer.lines


async def test_direct_delivery_only_when_every_stored_form_is_refused(
    scripted_peer: MakePeer,
) -> None:
    refusals = {choice.command: REFUSED for choice in startup.CNMI_CHOICES[:-1]}
    peer = scripted_peer(generic_modem(**refusals))
    setup = await initialise_on(peer)
    assert setup.cnmi is not None
    assert setup.cnmi.direct
    assert peer.lines.index("AT+CSMS=1") < peer.lines.index("AT+CNMI=2,2")


async def test_no_sim_skips_sms_setup(scripted_peer: MakePeer) -> None:
    peer = scripted_peer(generic_modem(**{"AT+CPIN?": b"\r\n+CME ERROR: 10\r\n"}))
    setup = await initialise_on(peer)
    assert setup.sim_state is SimState.ABSENT
    assert setup.cnmi is None
    assert not [line for line in peer.lines if line.startswith("AT+CNMI")]


@pytest.mark.parametrize(
    ("error", "state"),
    [
        ("+CME ERROR: 10", SimState.ABSENT),
        ("+CMS ERROR: 310", SimState.ABSENT),
        ("+CME ERROR: 14", SimState.BUSY),
        ("+CMS ERROR: 314", SimState.BUSY),  # the two maps of old disagreed here
        ("+CME ERROR: 11", SimState.LOCKED),
        ("+CMS ERROR: 316", SimState.LOCKED),
        ("+CME ERROR: 13", SimState.ERROR),  # SIM failure: no +CPIN status says it
        ("+CMS ERROR: 10", SimState.ERROR),  # CMS 10 is "call barred", not a SIM state
        ("ERROR", SimState.ERROR),
    ],
)
async def test_a_refused_cpin_says_the_sim_state_by_one_map(
    scripted_peer: MakePeer, error: str, state: SimState
) -> None:
    peer = scripted_peer({"AT+CPIN?": f"\r\n{error}\r\n".encode()})
    session = await AtSession.open(peer.device, command_timeout=1)
    try:
        assert await startup.sim_status(session) is state
    finally:
        await session.close()


async def test_storages_of_the_vendor_when_the_modem_lists_none(scripted_peer: MakePeer) -> None:
    peer = scripted_peer(
        generic_modem(
            **{"AT+CGMI": answer("SIMCOM_Ltd"), "AT+CGMM": answer("SIMCOM_SIM800L")},
            **{"AT+CPMS=?": ERROR},
        )
    )
    setup = await initialise_on(peer)
    assert setup.vendor is SIMCOM
    assert setup.storages == ("SM", "ME")  # SIM800 spills into ME: read it too
    assert startup.storages_to_read((), (), GENERIC.storage.receives_into) == ("SM",)
    assert startup.storages_to_read(("SM",), (), SIMCOM.storage.receives_into) == ("SM",)


async def test_iccid_by_crsm_when_no_vendor_command_works(scripted_peer: MakePeer) -> None:
    iccid = "89701012345678901234"
    ef_iccid = "".join(iccid[i + 1] + iccid[i] for i in range(0, 20, 2))
    cops_format = {"value": 0}

    def set_format(line: str) -> bytes:
        cops_format["value"] = int(line.rsplit(",", 1)[1])
        return answer()

    def cops(_line: str) -> bytes:
        name = ("MTS RUS", "MTS", "25001")[cops_format["value"]]
        return answer(f'+COPS: 0,{cops_format["value"]},"{name}",7')

    peer = scripted_peer(
        {
            "AT+CCID": ERROR,
            "AT+QCCID": ERROR,
            "AT+CICCID": ERROR,
            "AT^ICCID?": ERROR,
            vendors.CRSM_ICCID: answer(f'+CRSM: 144,0,"{ef_iccid}"'),
            "AT+CIMI": answer("250011234567890"),
            "AT+COPS=3,2": set_format,
            "AT+COPS=3,0": set_format,
            "AT+COPS?": cops,
        }
    )
    session = await AtSession.open(peer.device, command_timeout=1)
    try:
        sim = await startup.identify_sim(session, GENERIC)
    finally:
        await session.close()
    assert sim == startup.SimIdentity(
        iccid=iccid,
        imsi="250011234567890",
        operator="25001",
        serving="25001",
        operator_name="MTS RUS",
    )


@pytest.mark.parametrize(
    ("profile", "vendor", "iccid_command"),
    [
        ("sim800", SIMCOM, "AT+CCID"),
        ("ec25", QUECTEL, "AT+QCCID"),
        ("huawei", HUAWEI, "AT^ICCID?"),
    ],
)
async def test_emulated_profiles_identify_by_their_vendor_command(
    start_hub: StartHub, profile: str, vendor: VendorProfile, iccid_command: str
) -> None:
    hub = await start_hub(profile=profile)
    session = await AtSession.open(at_link(hub), command_timeout=1)
    try:
        identity = await startup.identify(session)
    finally:
        await session.close()
    setup, sim = identity.setup, identity.sim
    modem = hub.slots[0].modem
    assert modem.sim is not None
    assert setup.vendor is vendor
    assert vendor.iccid_queries[0].command == iccid_command
    assert sim is not None
    assert sim.iccid == modem.sim.iccid
    assert sim.operator == modem.sim.operator.mcc_mnc
    assert sim.operator_name == modem.sim.operator.long_name
    assert setup.imei == modem.imei


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("Ваш номер: +79161234567", "RU", "+79161234567"),
        ("Vash nomer 89031234567", "RU", "+79031234567"),
        ("Ваш федеральный номер +7 (900) 123-45-67", "RU", "+79001234567"),
        ("Your number is 8031234567. Dial *312# for data.", "NG", "+2348031234567"),
        ("Your number is 447700123456", "", "447700123456"),
    ],
)
def test_number_from_operator_answers(text: str, region: str, expected: str) -> None:
    recipe = own_number.UssdRecipe("*1#", re.compile(own_number.ANY_NUMBER), region)
    assert own_number.number_from_answer(text, recipe) == expected


def test_configured_recipes_override_and_extend_the_built_in_ones() -> None:
    table = own_number.recipes(
        {
            "25001": UssdRecipeConfig(code="*100#", pattern=r"N(\d+)"),
            "26201": UssdRecipeConfig(code="*135#", region="DE"),
        }
    )
    assert table["25001"].code == "*100#"
    assert table["25001"].region == "RU"  # kept from the built-in recipe
    assert own_number.number_from_answer("N9161234567", table["25001"]) == "+79161234567"
    assert table["26201"].pattern.pattern == own_number.ANY_NUMBER
    assert table["25002"] == own_number.BUILT_IN_RECIPES["25002"]


def test_huawei_wants_the_ussd_code_packed() -> None:
    assert ussd.ussd_request("*205#", SIMCOM) == 'AT+CUSD=1,"*205#",15'
    for code in ("*111*0887#", "*205#", "*110*10#", "#686#", "*1234567#"):
        packed = ussd.ussd_request(code, HUAWEI)
        assert packed == f'AT+CUSD=1,"{pack_gsm7_hex(code)}",15'


async def test_ussd_answer_in_ucs2_from_an_emulated_modem(start_hub: StartHub) -> None:
    hub = await start_hub(profile="huawei", seed=1)
    modem = hub.slots[0].modem
    assert modem.sim is not None
    assert modem.sim.operator.ussd_encoding == "ucs2"  # Tele2 answers in Cyrillic
    modem.sim.number_stored = False
    network = modem.sim.operator.mcc_mnc
    session = await AtSession.open(at_link(hub), command_timeout=1)
    answers: asyncio.Queue[UssdReceived] = asyncio.Queue()

    async def forward() -> None:
        while True:
            urc = await session.urcs.get()
            if isinstance(urc, UssdReceived):
                answers.put_nowait(urc)

    forwarder = asyncio.create_task(forward())
    book = own_number.MemoryNumberBook()
    try:
        setup = await startup.initialise(session)
        number, source = await own_number.resolve(
            session,
            iccid=modem.sim.iccid,
            network=network,
            vendor=setup.vendor,
            book=book,
            table=own_number.recipes({}),
            answers=ussd.QueuedAnswers(answers),
            answer_within=2,
        )
    finally:
        forwarder.cancel()
        await session.close()
    assert (number, source) == (modem.sim.msisdn, NumberSource.USSD)
    assert book.numbers[modem.sim.iccid] == (modem.sim.msisdn, NumberSource.USSD)


@pytest.mark.parametrize(
    ("supported", "in_use", "expected"),
    [
        (("SM", "ME", "MT"), (), ("SM", "ME")),  # MT is the two together: not read twice
        (("SM", "ME", "SM_P", "ME_P", "MT"), (), ("SM", "ME")),  # SIMCom's aliases
        (("SM", "MT"), (), ("MT",)),  # ME only as part of the union: read the union
        (("BM", "SM", "SR"), (), ("SM", "SR")),  # broadcasts hold no SMS-DELIVER
        ((), ("ME",), ("SM", "ME")),  # AT+CPMS=? refused, but the modem used ME
        ((), (), ("SM",)),  # nothing known: the SIM, as ever
        (("ME",), (), ("SM", "ME")),
    ],
)
def test_storages_to_read(supported: tuple, in_use: tuple, expected: tuple) -> None:
    assert startup.storages_to_read(supported, in_use) == expected
