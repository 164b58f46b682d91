"""Numbers, MSRs, CPU lists and bitfields as users type them."""

from __future__ import annotations

import pytest

from msrctl.errors import USAGE, UsageError
from msrctl.registers.names import parse_msr
from msrctl.registers.parse import parse_bitfield, parse_cpus, parse_int, parse_value
from msrctl.registers.table import lookup


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x1b", 0x1B),
        ("0X1B", 0x1B),
        ("1bh", 0x1B),
        ("1BH", 0x1B),
        ("27", 27),
        ("0", 0),
        ("00", 0),
        ("0b11011", 27),
        ("0o33", 27),
        ("0xfee0_0900", 0xFEE00900),
        (" 42 ", 42),
        ("0xffffffffffffffff", (1 << 64) - 1),
    ],
)
def test_numbers(text: str, value: int) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "it is empty"),
        ("0x1g", "not a number"),
        ("1b", "not a number"),
        ("12z", "not a number"),
        ("-1", "negative"),
        ("010", "leading zero"),
        ("0x10000000000000000", "it needs 65 bits but MSR values have 64"),
    ],
)
def test_bad_numbers(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_value(text)
    assert fragment in e.value.message
    assert e.value.code == USAGE


def test_over_64_bits_message() -> None:
    with pytest.raises(UsageError) as e:
        parse_value("0x10000000000000000")
    assert e.value.message == (
        "value 0x10000000000000000 is too large: it needs 65 bits but MSR values have 64; "
        "give a value of at most 0xffffffffffffffff"
    )


def test_msr_numbers_and_names() -> None:
    assert parse_msr("0x1b") == 0x1B
    assert parse_msr("apic_base") == 0x1B
    assert parse_msr("IA32_APIC_BASE") == 0x1B
    assert parse_msr("MSR_IA32_APICBASE") == 0x1B
    assert parse_msr("tsc") == 0x10
    assert parse_msr("0xc0000103") == 0xC0000103
    with pytest.raises(UsageError, match="it needs 33 bits but MSR numbers have 32"):
        parse_msr("0x100000000")
    with pytest.raises(UsageError, match="neither a number nor a register name"):
        parse_msr("apic base")


def test_unknown_name_suggests() -> None:
    with pytest.raises(UsageError) as e:
        parse_msr("APIC_BAS")
    assert e.value.message.startswith("unknown register 'APIC_BAS': not in the bundled register table; ")
    assert "did you mean IA32_APIC_BASE?" in e.value.message


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("0", [0]),
        ("0,2-5,7", [0, 2, 3, 4, 5, 7]),
        ("3,1,1", [1, 3]),
        (" 1 - 2 , 4", [1, 2, 4]),
        ("5-5", [5]),
        ("0x1", [1]),  # rdmsr -p takes hex
        ("0x0-0x2", [0, 1, 2]),
    ],
)
def test_cpu_lists(text: str, cpus: list[int]) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is not a CPU number or range"),
        ("1,", "is not a CPU number or range"),
        ("a", "'a' is not a CPU number"),
        ("0x", "'0x' is not a CPU number"),
        ("0xg", "'0xg' is not a CPU number"),
        ("-1", "is not a CPU number or range"),
        ("5-2", "runs backwards; write it as 2-5"),
        ("0-4000000000", "names more than 65536 CPUs"),
        ("4294967295", "no such CPU 4294967295"),
    ],
)
def test_bad_cpu_lists(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_cpus(text)
    assert fragment in e.value.message


def test_bitfields() -> None:
    assert parse_bitfield("8:8") == (8, 8)
    assert parse_bitfield("63:0") == (63, 0)
    assert parse_bitfield("11") == (11, 11)
    reg = lookup("apic_base")
    assert parse_bitfield("base", reg) == (51, 12)
    for bad in ("64:0", "3:4", "x", "1:2:3", ""):
        with pytest.raises(UsageError, match="malformed bitfield"):
            parse_bitfield(bad, reg)


def test_int_width() -> None:
    assert parse_int("0xff", "x", 8) == 255
    with pytest.raises(UsageError):
        parse_int("0x100", "x", 8)
