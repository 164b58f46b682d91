"""Batch input parsing: text and JSON, good lines and each kind of bad one."""

from __future__ import annotations

import pytest

from msrctl.cli.batchfile import parse
from msrctl.device.ops import Op
from msrctl.errors import UsageError


def online() -> list[int]:
    return [0, 1, 2]


GOOD = """\
# a comment
read 0x1b
read apic_base cpu 1   # trailing comment
READ TSC cpus 0-1
write tsc_aux 0x5 cpu 2
write 0xc0000103 7 mask 0xff cpus all
rdtsc
rdtsc cpu 1

nop
stop
"""


def test_text_good() -> None:
    ops = parse(GOOD, "ops.txt", online)
    assert ops == [
        Op("read", 0, 0x1B, where="ops.txt:2"),
        Op("read", 1, 0x1B, where="ops.txt:3"),
        Op("read", 0, 0x10, where="ops.txt:4"),
        Op("read", 1, 0x10, where="ops.txt:4"),
        Op("write", 2, 0xC0000103, 5, None, "ops.txt:5"),
        Op("write", 0, 0xC0000103, 7, 0xFF, "ops.txt:6"),
        Op("write", 1, 0xC0000103, 7, 0xFF, "ops.txt:6"),
        Op("write", 2, 0xC0000103, 7, 0xFF, "ops.txt:6"),
        Op("rdtsc", 0, where="ops.txt:7"),
        Op("rdtsc", 1, where="ops.txt:8"),
        Op("nop", 0, where="ops.txt:10"),
        Op("stop", 0, where="ops.txt:11"),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "read APIC_BAS",
            "ops.txt:3: unknown register 'APIC_BAS': not in the bundled register table; did you mean IA32_APIC_BASE?",
        ),
        ("raed 0x10", "ops.txt:3: unknown op 'raed': not a batch operation; did you mean read?"),
        ("frobnicate", "ops.txt:3: unknown op 'frobnicate': not a batch operation; use read, write"),
        ("read", "ops.txt:3: read needs MSR: missing in this line; write it as: read MSR [cpu N]"),
        ("read cpu 1", "ops.txt:3: read needs MSR"),
        ("write 0x10", "ops.txt:3: write needs MSR and VALUE: missing in this line; write it as: write MSR VALUE"),
        ("write 0x10 0x1g", "ops.txt:3: malformed value '0x1g': not a number"),
        ("write 0x10 0x10000000000000000", "ops.txt:3: value 0x10000000000000000 is too large"),
        ("write 0x10 1 mask 0x1g", "ops.txt:3: malformed mask '0x1g'"),
        ("read 0x10 cpu", "ops.txt:3: 'cpu' needs a value"),
        ("read 0x10 cpu 3-1", "ops.txt:3: malformed CPU list '3-1'"),
        ("read 0x10 mask 1", "ops.txt:3: unexpected 'mask' after read"),
        ("read 0x10 extra", "ops.txt:3: unexpected 'extra' after read"),
        ("nop 1", "ops.txt:3: unexpected '1' after nop: not part of this op's syntax; nop takes no arguments"),
        ("read 0x1_0000_0000", "ops.txt:3: MSR 0x1_0000_0000 is too large"),
        ("read 0x10 cpu 0 cpu 1", "ops.txt:3: 'cpu' given twice: an op takes one"),
        ("read 0x10 cpu 0 cpus 1", "ops.txt:3: 'cpus' given twice"),
        ("write 0x10 1 mask 1 mask 2", "ops.txt:3: 'mask' given twice"),
    ],
)
def test_text_bad(line: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse(f"# header\n\n{line}\nread 0x10\n", "ops.txt", online)
    assert e.value.message.startswith(message), e.value.message


def test_json_good() -> None:
    text = """[
      {"op": "read", "msr": "0x1b", "cpu": 0},
      {"op": "read", "msr": 27, "cpus": [1, 2]},
      {"op": "write", "msr": "IA32_TSC_AUX", "value": "0x5", "mask": 255, "cpu": "all"},
      {"op": "RDTSC"},
      {"op": "stop"}
    ]"""
    ops = parse(text, "ops.json", online)
    assert [(o.kind, o.cpu, o.msr, o.value, o.mask) for o in ops] == [
        ("read", 0, 0x1B, 0, None),
        ("read", 1, 0x1B, 0, None),
        ("read", 2, 0x1B, 0, None),
        ("write", 0, 0xC0000103, 5, 255),
        ("write", 1, 0xC0000103, 5, 255),
        ("write", 2, 0xC0000103, 5, 255),
        ("rdtsc", 0, 0, 0, None),
        ("stop", 0, 0, 0, None),
    ]
    assert ops[0].where == "ops.json: op 1"
    single = parse('{"op": "read", "msr": "tsc"}', "x", online)
    assert single == [Op("read", 0, 0x10, where="x: op 1")]
    assert len(parse('{"ops": [{"op": "nop"}, {"op": "nop"}]}', "x", online)) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"op": "read", "msr": "APIC_BAS"}]', "ops.json: op 1: unknown register 'APIC_BAS'"),
        ('[{"op": "nop"}, {"op": "raed"}]', "ops.json: op 2: unknown op 'raed'"),
        ('[{"op": "read"}]', 'ops.json: op 1: read needs "msr"'),
        ('[{"op": "write", "msr": 16}]', 'ops.json: op 1: write needs "value"'),
        ('[{"op": "read", "msr": 16, "value": 1}]', 'ops.json: op 1: unexpected key "value"'),
        ('[{"op": "read", "msr": true}]', "ops.json: op 1: malformed msr true"),
        ('[{"op": "read", "msr": 16, "cpus": ["a"]}]', 'ops.json: op 1: malformed cpus ["a"]'),
        ('[{"op": "read", "msr": 16, "cpu": {}}]', "ops.json: op 1: malformed cpu {}"),
        ('[{"op": "write", "msr": 16, "value": "0x10000000000000000"}]', "ops.json: op 1: value 0x1"),
        ("[1]", "ops.json: op 1: malformed op"),
        ('{"ops": 5}', "ops.json: malformed batch"),
        ('[{"op": "read",\n  "msr": }]', "ops.json:2:10: invalid JSON: Expecting value"),
        ('[{"op": "read", "msr": 16, "cpu": 0, "cpus": 1}]', 'ops.json: op 1: both "cpu" and "cpus"'),
        ('[{"op": "read", "msr": 16, "cpu": 0, "cpu": 1}]', 'ops.json: key "cpu" given twice'),
        ('[{"op": "write", "msr": 16, "value": 1, "mask": 1, "mask": 2}]', 'ops.json: key "mask" given twice'),
        ('[{"op": "read", "msr": 16, "cpus": []}]', "ops.json: op 1: empty CPU list []: the op would run nowhere"),
        ("[" * 100_000 + "]" * 100_000, "ops.json: malformed batch: the JSON is nested too deeply"),
        ("[]", "ops.json: no ops: the JSON holds an empty list of ops"),
        ('{"ops": []}', "ops.json: no ops: the JSON holds an empty list"),
    ],
)
def test_json_bad(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse(text, "ops.json", online)
    assert e.value.message.startswith(message), e.value.message


def test_empty_input() -> None:
    with pytest.raises(UsageError, match="x: no ops: the input holds only blank lines and comments"):
        parse("# only a comment\n\n", "x", online)


def test_a_utf8_byte_order_mark_is_skipped() -> None:
    assert parse("\ufeffread 0x10\n", "x", online) == [Op("read", 0, 0x10, where="x:1")]
    assert parse('\ufeff[{"op": "read", "msr": 16}]', "x", online) == [Op("read", 0, 0x10, where="x: op 1")]
