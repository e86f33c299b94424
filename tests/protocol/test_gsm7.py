"""The GSM 7-bit alphabets (TS 23.038) and septet packing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.protocol import gsm7
from agent.protocol.gsm7_tables import NATIONAL_TABLES, parse_grid


def reference_pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """A deliberately naive packer written from the 23.038 6.1.2.1.1 figure: septets as
    bit strings, least significant bit first, cut into octets. Independent of gsm7."""
    bits = "0" * fill_bits + "".join(format(code, "07b")[::-1] for code in septets)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))


def test_hellohello_packs_as_the_classic_example() -> None:
    # The "hellohello" packing of the SMS-DELIVER example in Lars Pettersson's "SMS and the
    # PDU format" (dreamfabric.com), also ModemManager's test_pdu3: E8329BFD4697D9EC37.
    septets = b"hellohello"  # ASCII letters sit at their own codes in the default alphabet
    assert gsm7.pack_septets(septets) == bytes.fromhex("E8329BFD4697D9EC37")
    assert gsm7.unpack_septets(bytes.fromhex("E8329BFD4697D9EC37"), 10) == septets


@given(st.binary(max_size=170).map(lambda raw: bytes(b & 0x7F for b in raw)), st.integers(0, 7))
def test_packing_matches_the_naive_reference_and_round_trips(septets: bytes, skip: int) -> None:
    packed = gsm7.pack_septets(septets, skip)
    assert packed == reference_pack(septets, 7 * skip)
    assert gsm7.unpack_septets(packed, len(septets), skip) == septets


def test_default_alphabet_positions_from_the_standard() -> None:
    table = gsm7.DEFAULT_ALPHABET
    assert len(table) == 128
    assert (table[0x00], table[0x02], table[0x11], table[0x40], table[0x60]) == (
        "@",
        "$",
        "_",
        "¡",
        "¿",
    )
    assert table[0x41:0x5B] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert table[0x30:0x3A] == "0123456789"
    assert gsm7.decode_septets(bytes([0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E])) == "€[]"


def test_escape_to_an_undefined_extension_position_shows_the_main_table_character() -> None:
    # 23.038 6.2.1.1: a code the extension table lacks displays the default alphabet's.
    assert gsm7.decode_septets(bytes([0x1B, 0x41])) == "A"


def test_double_escape_is_a_space_and_a_dangling_escape_is_dropped() -> None:
    assert gsm7.decode_septets(bytes([0x41, 0x1B, 0x1B, 0x42])) == "A B"
    assert gsm7.decode_septets(bytes([0x41, 0x1B])) == "A"


def test_every_national_language_of_annex_a_is_present() -> None:
    names = {language.name for language in gsm7.LANGUAGES.values()}
    assert names == {
        "default",
        "turkish",
        "spanish",
        "portuguese",
        "bengali",
        "gujarati",
        "hindi",
        "kannada",
        "malayalam",
        "oriya",
        "punjabi",
        "tamil",
        "telugu",
        "urdu",
    }
    assert gsm7.LANGUAGES[2].locking == ""  # Spanish has a single shift table only


@pytest.mark.parametrize(("ident", "name", "locking_grid", "single_grid"), NATIONAL_TABLES)
def test_national_tables_have_the_fixed_points_of_the_standard(
    ident: int, name: str, locking_grid: str, single_grid: str
) -> None:
    """What every Annex A table shares: in locking tables LF/CR/ESC/space, digits and the
    small latin letters; in single shift tables FF, the brackets and the euro sign."""
    language = gsm7.LANGUAGES[ident]
    assert language.name == name
    if locking_grid:
        locking = language.locking
        assert len(locking) == 128
        assert (locking[0x0A], locking[0x0D], locking[0x1B], locking[0x20]) == (
            "\n",
            "\r",
            "\x1b",
            " ",
        )
        assert locking[0x30:0x3A] == "0123456789"
        assert locking[0x61:0x7B] == "abcdefghijklmnopqrstuvwxyz"
        assert locking[0x2C] == ","  # an erratum of one transcription: see gsm7_tables
        defined = [char for char in locking if char != gsm7.UNDEFINED]
        assert len(defined) == len(set(defined)), "a locking table maps two codes to one char"
    single = language.single
    assert single[0x0A] == "\f"
    assert (single[0x28], single[0x29], single[0x3C], single[0x3E], single[0x40]) == tuple("{}[]|")
    assert single[0x65] == "€"
    assert gsm7.ESCAPE not in single


def test_transcription_errata_are_corrected() -> None:
    assert gsm7.LANGUAGES[7].locking[0x24] == "\u0ca1"  # Kannada DDA, printed as 0CAA
    assert gsm7.LANGUAGES[11].single[0x24] == "\u0bee"  # Tamil digit eight
    assert (gsm7.LANGUAGES[12].single[0x22], gsm7.LANGUAGES[12].single[0x23]) == (
        "\u0c6c",
        "\u0c6d",
    )


def test_turkish_tables_decode_the_letters_the_standard_places() -> None:
    # A.3.1 Turkish locking shift: 0x07 ı, 0x0B Ğ, 0x0C ğ, 0x1C Ş, 0x1D ş, 0x40 İ, 0x60 ç.
    septets = bytes([0x07, 0x0B, 0x0C, 0x1C, 0x1D, 0x40, 0x60])
    assert gsm7.decode_septets(septets, locking=1) == "ıĞğŞşİç"
    # A.2.1 Turkish single shift: escape + 0x47 Ğ, 0x49 İ, 0x53 Ş, 0x63 ç, 0x73 ş.
    escaped = bytes([0x1B, 0x47, 0x1B, 0x49, 0x1B, 0x53, 0x1B, 0x63, 0x1B, 0x73])
    assert gsm7.decode_septets(escaped, single=1) == "ĞİŞçş"


def test_unknown_language_identifiers_fall_back_to_the_default_tables() -> None:
    assert gsm7.decode_septets(b"abc\x1b\x65", locking=99, single=42) == "abc€"


def test_encoding_prefers_the_main_table_and_refuses_what_no_table_has() -> None:
    assert gsm7.encode_chars("A€") == [b"\x41", b"\x1b\x65"]
    assert gsm7.encode_chars("Ж") is None
    with pytest.raises(ValueError, match="no locking shift table"):
        gsm7.encode_chars("a", locking=2)
    with pytest.raises(ValueError, match="unknown national language"):
        gsm7.language_by_name("klingon")


def test_grid_parser_rejects_malformed_grids() -> None:
    with pytest.raises(ValueError, match="16 rows"):
        parse_grid("a b c d e f g h\n")
    with pytest.raises(ValueError, match="not 8"):
        parse_grid("\n".join(["-- -- --"] * 16))
    with pytest.raises(ValueError, match="not a character"):
        parse_grid("\n".join(["-- -- -- -- -- -- -- XYZ"] * 16))
