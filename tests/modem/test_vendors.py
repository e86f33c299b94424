"""The vendor profiles: each complete, and every module the emulator plays recognised by
the profile of its vendor, with the quirks the emulated module really has."""

from __future__ import annotations

import dataclasses

import pytest

from agent.emulate.modems.profiles import PROFILES, Profile
from agent.modem import vendors
from agent.modem.vendors import (
    GENERIC,
    VENDORS,
    StorageQuirks,
    UssdCoding,
    VendorProfile,
    known_device,
    sim_state_reported,
    vendor_named,
)
from agent.protocol import commands, urc
from agent.status import SimState


def test_a_profile_must_state_every_field() -> None:
    """No field has a default, so a new profile (or a new field) cannot leave one unsaid:
    a vendor that is not special names GENERIC's value."""
    for spec in dataclasses.fields(VendorProfile):
        assert spec.default is dataclasses.MISSING, spec.name
        assert spec.default_factory is dataclasses.MISSING, spec.name
    given = {spec.name: getattr(GENERIC, spec.name) for spec in dataclasses.fields(VendorProfile)}
    del given["storage"]
    with pytest.raises(TypeError, match="storage"):
        VendorProfile(**given)


@pytest.mark.parametrize("vendor", VENDORS, ids=lambda vendor: vendor.name)
def test_every_profile_is_complete(vendor: VendorProfile) -> None:
    assert vendor.name
    assert vendor.usb_devices, "a profile names the USB devices it is known by"
    assert vendor.iccid_queries, "a profile names how its ICCID is read"
    for query in vendor.iccid_queries:
        assert query.command.startswith("AT")
        assert query.answer_prefixes
    assert all(line.startswith("AT") for line in vendor.setup_commands)
    assert isinstance(vendor.ussd_coding, UssdCoding)
    assert isinstance(vendor.storage, StorageQuirks)
    if vendor is not GENERIC:
        assert vendor.recognised_by, "only the fallback is recognised by nothing"
        assert all(word == word.lower() for word in vendor.recognised_by)
    for device in vendor.usb_devices:
        assert device.source, f"{device.name}: where its layout comes from"
        assert known_device(f"{device.vid}:{device.pid or 'ffff'}") is not None


def test_names_are_unique_and_generic_is_last() -> None:
    assert len({vendor.name for vendor in VENDORS}) == len(VENDORS)
    assert VENDORS[-1] is GENERIC
    entries = [(device.vid, device.pid) for vendor in VENDORS for device in vendor.usb_devices]
    assert len(set(entries)) == len(entries), "a USB device belongs to one vendor"


def test_a_module_of_no_known_vendor_gets_the_generic_profile() -> None:
    assert vendor_named("ACME Wireless", "X1") is GENERIC
    assert vendor_named(None, None) is GENERIC
    assert known_device("dead:beef") is None


# The vendor of each emulated module, as its real module's maker. A new emulated profile
# must be added here (test_the_table_covers_the_emulator), and so be recognised.
EMULATED_VENDOR = {
    "sim800": vendors.SIMCOM,
    "pool": vendors.SIMCOM,
    "quad": vendors.SIMCOM,
    "ec25": vendors.QUECTEL,
    "huawei": vendors.HUAWEI,
    "huawei3": vendors.HUAWEI,
}


def test_the_table_covers_the_emulator() -> None:
    assert set(EMULATED_VENDOR) == set(PROFILES)


def expected_vendor(profile: Profile) -> VendorProfile:
    vendor = EMULATED_VENDOR[profile.name]
    # The module's ICCID command is its vendor's first one.
    assert profile.iccid_command in vendor.iccid_queries[0].answer_prefixes
    return vendor


@pytest.mark.parametrize("profile", PROFILES.values(), ids=lambda profile: profile.name)
def test_every_emulated_module_is_recognised_by_its_vendor(profile: Profile) -> None:
    vendor = expected_vendor(profile)
    assert vendor_named(profile.manufacturer, profile.model) is vendor
    info = commands.parse_ati([line.format(imei="490154203237518") for line in profile.ati])
    assert vendor_named(info.manufacturer, info.model) is vendor
    known = known_device(f"{profile.vid}:{profile.pid}")
    if known is not None:
        owner, device = known
        # A bridge chip carries anyone's module; any other device is its vendor's own.
        assert owner is vendor or (owner is GENERIC and device.bridge)
        if device.roles:
            assert {spec.interface: spec.role for spec in profile.ports} == dict(device.roles)
            assert device.urc_interface == profile.urc_interface


@pytest.mark.parametrize("profile", PROFILES.values(), ids=lambda profile: profile.name)
def test_the_profile_has_the_quirks_the_emulated_module_has(profile: Profile) -> None:
    vendor = expected_vendor(profile)
    packed = vendor.ussd_coding is UssdCoding.GSM7_PACKED_HEX
    assert packed == profile.ussd_packed_request
    own_reports = [
        line for line in (*profile.sim_ready_urcs, *profile.boot_urcs) if line.startswith("^")
    ]
    sim_reports = [
        line
        for line in own_reports
        if sim_state_reported(urc.parse_urc(line.format(boot="0"))) is not None
    ]
    assert bool(sim_reports) == (vendor.sim_status_report is not None)
    if profile.spill_to_me or "ME" in profile.default_cpms:
        # One module of the vendor doing it is enough for the vendor's profile to say it.
        assert "ME" in vendor.storage.receives_into
    if profile.curc_noise:
        assert "AT^CURC=0" in vendor.setup_commands


@pytest.mark.parametrize(
    ("line", "state"),
    [
        ("^SIMST:1", SimState.READY),
        ("^SIMST: 255,1", SimState.ABSENT),
        ("^SIMST: 0", SimState.ERROR),
        ("^SIMST: 240", SimState.ERROR),
        ("+CREG: 1", None),
        ("+CPIN: READY", None),  # the standard report: the worker reads it itself
    ],
)
def test_vendor_sim_reports(line: str, state: SimState | None) -> None:
    assert sim_state_reported(urc.parse_urc(line)) is state


def test_ussd_coding_is_the_vendors() -> None:
    assert vendors.HUAWEI.ussd_coding is UssdCoding.GSM7_PACKED_HEX
    assert vendors.SIMCOM.ussd_coding is GENERIC.ussd_coding is UssdCoding.TEXT
