"""rdmsr's output flags (-x -X -d -u -o -r -c -0 -f), checked value by value."""

from __future__ import annotations

import pytest

from msrctl.cli.output import Format, _decdigits, extract, format_value, msr_label, record

APIC = 0xFEE00900
ONES = (1 << 64) - 1

# rdmsr.c's decdigits[] table: decimal digits of 2**n - 1.
RDMSR_DECDIGITS = [
    1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5,
    5, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10, 10,
    10, 10, 11, 11, 11, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 15,
    15, 15, 16, 16, 16, 16, 17, 17, 17, 18, 18, 18, 19, 19, 19, 19,
    20,
]  # fmt: skip


def test_decdigits_match_rdmsr() -> None:
    assert [_decdigits(n) for n in range(65)] == RDMSR_DECDIGITS


@pytest.mark.parametrize(
    ("fmt", "apic", "ones"),
    [
        (Format(), "fee00900", "ffffffffffffffff"),
        (Format("x"), "fee00900", "ffffffffffffffff"),
        (Format("X"), "FEE00900", "FFFFFFFFFFFFFFFF"),
        (Format("x", c=True), "0xfee00900", "0xffffffffffffffff"),
        (Format("X", c=True), "0xFEE00900", "0xFFFFFFFFFFFFFFFF"),
        (Format("x", zero=True), "00000000fee00900", "ffffffffffffffff"),
        (Format("X", zero=True), "00000000FEE00900", "FFFFFFFFFFFFFFFF"),
        (Format("x", c=True, zero=True), "0x00000000fee00900", "0xffffffffffffffff"),
        (Format("d"), "4276095232", "-1"),
        (Format("d", zero=True), "00000000004276095232", "-0000000000000000001"),
        (Format("d", c=True, zero=True), "4276095232", "-1"),  # rdmsr: -c turns -0 off for -d
        (Format("u"), "4276095232", "18446744073709551615"),
        (Format("u", zero=True), "00000000004276095232", "18446744073709551615"),
        (Format("u", c=True), "4276095232U", "18446744073709551615U"),
        (Format("u", c=True, zero=True), "4276095232U", "18446744073709551615U"),
        (Format("o"), "37670004400", "1777777777777777777777"),
        (Format("o", c=True), "037670004400", "01777777777777777777777"),
        (Format("o", zero=True), "0000000000037670004400", "1777777777777777777777"),
        (Format("o", c=True, zero=True), "00000000000037670004400", "01777777777777777777777"),
    ],
)
def test_full_register(fmt: Format, apic: str, ones: str) -> None:
    assert format_value(APIC, fmt) == apic
    assert format_value(ONES, fmt) == ones


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (Format(high=8, low=8), "1"),
        (Format(zero=True, high=8, low=8), "1"),
        (Format("x", c=True, zero=True, high=15, low=8), "0x09"),
        (Format("x", zero=True, high=11, low=0), "900"),
        (Format("X", zero=True, high=31, low=12), "FEE00"),
        (Format("d", high=11, low=8), "-7"),  # 0b1001 as a signed 4-bit field
        (Format("d", zero=True, high=11, low=8), "-7"),  # C's %02lld: the width includes the sign
        (Format("d", zero=True, high=7, low=0), "0000"),
        (Format("u", zero=True, high=11, low=8), "09"),
        (Format("o", zero=True, high=11, low=8), "11"),
        (Format("d", high=7, low=0), "0"),
    ],
)
def test_bitfields(fmt: Format, text: str) -> None:
    assert format_value(APIC, fmt) == text


def test_raw() -> None:
    assert format_value(APIC, Format("r")) == APIC.to_bytes(8, "little")
    assert format_value(APIC, Format("r", c=True)) == "{0x00,0x09,0xe0,0xfe,0x00,0x00,0x00,0x00}"


def test_extract() -> None:
    assert extract(APIC, 51, 12) == 0xFEE00
    assert extract(APIC, 63, 0) == APIC
    assert extract(APIC, 11, 11) == 1


def test_unknown_mode() -> None:
    with pytest.raises(ValueError):
        format_value(1, Format("q"))


def test_record_and_label() -> None:
    assert record(1, 0x1B, "IA32_APIC_BASE", APIC) == {
        "op": "read",
        "cpu": 1,
        "msr": "0x1b",
        "name": "IA32_APIC_BASE",
        "value": APIC,
        "hex": "0xfee00900",
    }
    assert record(0, None, None, 5, "rdtsc") == {"op": "rdtsc", "cpu": 0, "value": 5, "hex": "0x5"}
    assert msr_label(0x1B, "IA32_APIC_BASE") == "0x1b(IA32_APIC_BASE)"
    assert msr_label(0x123, None) == "0x123"
