"""msrctl against the real module, inside the test VM (as root, msrdrv loaded).

Runs `<python> -m msrctl` for every interpreter in $MSRCTL_PYTHONS (':'-separated,
default: this one).  Facts of the VM: IA32_APIC_BASE reads 0xfee00900 on CPU 0
and 0xfee00800 elsewhere; writing IA32_PKRS with bit 40 faults; no PMU.
"""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Device
from conftest import cli_calls as run_many

from msrctl.admin import allowlist
from msrctl.admin.allowlist import Entry

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "/dev/msrdrv"
PYTHONS = [p for p in os.environ.get("MSRCTL_PYTHONS", sys.executable).split(":") if p]
TSC_AUX = 0xC0000103
NOBODY = 65534


def online() -> list[int]:
    cpus: list[int] = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


CPUS = online()


def apic(cpu: int) -> int:
    return 0xFEE00900 if cpu == 0 else 0xFEE00800


@pytest.fixture(params=PYTHONS)
def python(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(
    python: str, *args: str, stdin: str = "", prefix: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    e.pop("MSRCTL_DEVICE", None)
    return subprocess.run(
        [*prefix, python, "-m", "msrctl", *args], input=stdin, capture_output=True, text=True, env=e, check=False
    )


def error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("msrctl: error: ")
    return lines[0][len("msrctl: error: ") :]


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return res.stdout


# --- status -----------------------------------------------------------------------


def test_status_text(python: str) -> None:
    out = ok(run(python, "status"))
    assert "module:    msrdrv " in out and " loaded, " in out
    assert "device:    /dev/msrdrv root:msr 0660\n" in out
    assert "access:    root can open it" in out
    assert "abi:       version 1 (msrctl expects 1)" in out
    assert "writes:    allowed\n" in out
    assert out.endswith("status:    ready\n")


def test_status_json(python: str) -> None:
    rep = json.loads(ok(run(python, "status", "--json")))
    assert rep["ok"] is True and rep["problems"] == []
    assert rep["module"]["loaded"] is True and rep["module"]["version"]
    assert rep["device"] == {
        "path": DEVICE,
        "exists": True,
        "char_device": True,
        "mode": "0660",
        "owner": "root",
        "group": "msr",
    }
    assert rep["user"]["can_open"] is True and rep["user"]["uid"] == 0
    abi = rep["abi"]
    assert abi["version"] == abi["expected"] == 1
    assert abi["rawio"] is True and abi["writes_allowed"] is True and abi["lockdown"] is False
    assert abi["nr_cpu_ids"] >= len(CPUS) and abi["max_ops"] >= 1
    assert abi["module_version"] == rep["module"]["version"]
    assert "multi_cpu" in abi["features"]


# --- read ---------------------------------------------------------------------------


READ_VARIANTS: list[tuple[list[str], Callable[[int], str]]] = [
    ([], lambda v: f"{v:x}"),
    (["-x"], lambda v: f"{v:x}"),
    (["-X"], lambda v: f"{v:X}"),
    (["-d"], lambda v: str(v)),
    (["-u"], lambda v: str(v)),
    (["-o"], lambda v: f"{v:o}"),
    (["-c"], lambda v: f"{v:#x}"),
    (["-x", "-c"], lambda v: f"{v:#x}"),
    (["-0"], lambda v: f"{v:016x}"),
    (["-c", "-0"], lambda v: f"0x{v:016x}"),
    (["-f", "8:8"], lambda v: str(v >> 8 & 1)),
    (["-f", "BSP"], lambda v: str(v >> 8 & 1)),
    (["-f", "11:8", "-d"], lambda v: str((v >> 8 & 0xF) - 16)),
    (["-f", "51:12", "-X", "-c"], lambda v: f"0x{v >> 12:X}"),
]


def test_read_all_apic_base(python: str) -> None:
    assert ok(run(python, "read", "-a", "IA32_APIC_BASE")).splitlines() == [f"{apic(c):x}" for c in CPUS]
    calls = [["read", "-a", "IA32_APIC_BASE", *flags] for flags, _ in READ_VARIANTS]
    for res, (flags, expect) in zip(run_many(python, calls), READ_VARIANTS):
        assert ok(res).splitlines() == [expect(apic(cpu)) for cpu in CPUS], flags


def test_read_spellings_and_cpus(python: str) -> None:
    assert ok(run(python, "read", "0x1b")) == "fee00900\n"  # CPU 0 by default, like rdmsr
    assert ok(run(python, "read", "apic_base", "-p", "0")) == "fee00900\n"
    assert ok(run(python, "read", "27", "-c")) == "0xfee00900\n"
    if len(CPUS) > 1:
        assert ok(run(python, "read", "1bh", "-p", f"0-{CPUS[-1]}", "-c")).splitlines() == [
            f"{apic(c):#x}" for c in CPUS
        ]


def test_read_json(python: str) -> None:
    recs = json.loads(ok(run(python, "read", "-a", "apic_base", "--json")))
    assert recs == [
        {"op": "read", "cpu": c, "msr": "0x1b", "name": "IA32_APIC_BASE", "value": apic(c), "hex": f"{apic(c):#x}"}
        for c in CPUS
    ]


def test_rdtsc(python: str) -> None:
    values = [int(v) for v in ok(run(python, "rdtsc", "-a")).split()]
    assert len(values) == len(CPUS) and all(v > 0 for v in values)
    recs = json.loads(ok(run(python, "rdtsc", "--json")))
    assert recs[0]["op"] == "rdtsc" and recs[0]["cpu"] == 0 and recs[0]["value"] > 0


# --- write ---------------------------------------------------------------------------


@pytest.fixture
def tsc_aux(python: str) -> Iterator[dict[int, int]]:
    """The original TSC_AUX of each CPU, restored afterwards (Linux keeps the CPU number there)."""
    recs = json.loads(ok(run(python, "read", "-a", "tsc_aux", "--json")))
    original = {r["cpu"]: r["value"] for r in recs}
    yield original
    run_many(python, [["write", "tsc_aux", hex(value), "-p", str(cpu)] for cpu, value in original.items()])
    recs = json.loads(ok(run(python, "read", "-a", "tsc_aux", "--json")))
    assert {r["cpu"]: r["value"] for r in recs} == original


def test_write_read_back_tsc_aux(python: str, tsc_aux: dict[int, int]) -> None:
    calls = []
    for cpu in CPUS:
        calls += [
            ["write", "IA32_TSC_AUX", hex(0x5A00 + cpu), "-p", str(cpu)],
            ["read", "tsc_aux", "-p", str(cpu), "-c"],
        ]
    outs = [ok(res) for res in run_many(python, calls)]
    assert outs == [x for cpu in CPUS for x in ("", f"{0x5A00 + cpu:#x}\n")]
    # a masked write changes only the masked bits, on all CPUs in one call
    recs = json.loads(ok(run(python, "write", "tsc_aux", "0x7f", "--mask", "0xff", "-a", "--json")))
    assert [r["value"] for r in recs] == [0x5A7F for _ in CPUS]
    assert ok(run(python, "read", "-a", "tsc_aux", "-c")).splitlines() == ["0x5a7f"] * len(CPUS)


def test_rdmsr_and_wrmsr_habits(python: str, tsc_aux: dict[int, int]) -> None:
    """wrmsr writes several values in turn; rdmsr's last base option wins; -p takes hex."""
    recs = json.loads(ok(run(python, "write", "tsc_aux", "1", "2", "0x33", "-p", "0x0", "--json")))
    assert [(r["cpu"], r["value"]) for r in recs] == [(0, 1), (0, 2), (0, 0x33)]
    assert ok(run(python, "read", "tsc_aux", "-x", "-d")) == "51\n"
    assert ok(run(python, "read", "tsc_aux", "-d", "-X")) == "33\n"


# --- batch ---------------------------------------------------------------------------

BATCH = """\
# TSC_AUX round trip on CPU 0, then APIC_BASE everywhere
read  IA32_TSC_AUX
write tsc_aux 0x77
read  0xc0000103
read  apic_base cpus all
rdtsc cpu 0
nop
stop
read  0x1b
"""


def check_batch_lines(lines: list[str], original: int) -> None:
    assert lines[0] == f"0 read 0xc0000103(IA32_TSC_AUX) {original:#x}"
    assert lines[1] == "0 write 0xc0000103(IA32_TSC_AUX) 0x77"
    assert lines[2] == "0 read 0xc0000103(IA32_TSC_AUX) 0x77"
    n = len(CPUS)
    assert lines[3 : 3 + n] == [f"{c} read 0x1b(IA32_APIC_BASE) {apic(c):#x}" for c in CPUS]
    assert lines[3 + n].startswith("0 rdtsc ") and int(lines[3 + n].split()[2]) > 0
    assert lines[4 + n :] == ["- nop", "- stop", "0 read 0x1b(IA32_APIC_BASE) not-run"]


def test_batch_file(python: str, tsc_aux: dict[int, int], tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text(BATCH)
    check_batch_lines(ok(run(python, "batch", str(ops))).splitlines(), tsc_aux[0])


def test_batch_stdin(python: str, tsc_aux: dict[int, int]) -> None:
    check_batch_lines(ok(run(python, "batch", stdin=BATCH)).splitlines(), tsc_aux[0])
    # the first run left 0x77 in TSC_AUX, which the second one reads first
    check_batch_lines(ok(run(python, "batch", "-", stdin=BATCH)).splitlines(), 0x77)


def test_batch_json(python: str, tsc_aux: dict[int, int]) -> None:
    ops = [
        {"op": "write", "msr": "tsc_aux", "value": "0x66", "cpu": 0},
        {"op": "read", "msr": "0xc0000103", "cpu": 0},
        {"op": "read", "msr": 27, "cpus": "all"},
    ]
    lines = ok(run(python, "batch", stdin=json.dumps(ops))).splitlines()
    assert lines[:2] == ["0 write 0xc0000103(IA32_TSC_AUX) 0x66", "0 read 0xc0000103(IA32_TSC_AUX) 0x66"]
    assert lines[2:] == [f"{c} read 0x1b(IA32_APIC_BASE) {apic(c):#x}" for c in CPUS]
    recs = json.loads(ok(run(python, "batch", "--json", stdin=json.dumps(ops[1:]))))
    assert recs[0]["value"] == 0x66 and recs[0]["where"] == "<stdin>: op 1"


def test_batch_op_fault_names_the_line(python: str, tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text("read 0x1b\nwrite IA32_PKRS 0x10000000000\nread 0x1b cpu 99\n")
    res = run(python, "batch", str(ops))
    assert res.returncode == 4
    assert res.stdout.splitlines() == [
        "0 read 0x1b(IA32_APIC_BASE) 0xfee00900",
        "0 write 0x6e1(IA32_PKRS) error:EIO",
        "99 read 0x1b(IA32_APIC_BASE) error:ENXIO",
    ]
    assert res.stderr.splitlines() == [
        f"msrctl: error: {ops}:2: MSR 0x6e1 (IA32_PKRS) faulted on CPU 0 writing 0x10000000000: "
        "not implemented on this CPU, or the value sets reserved bits; check the register number for this CPU model "
        "and the value",
        f"msrctl: error: {ops}:3: no such CPU 99: it is absent or offline (online: {cpu_list()}); "
        "choose an online CPU with -p, or use -a for all",
    ]


def test_batch_parse_error(python: str, tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text("read 0x10\n\nread APIC_BAS\n")
    res = run(python, "batch", str(ops))
    assert res.returncode == 64 and res.stdout == ""
    assert error_line(res).startswith(f"{ops}:3: unknown register 'APIC_BAS': not in the bundled register table; ")


# --- errors ----------------------------------------------------------------------------


def cpu_list() -> str:
    return f"0-{CPUS[-1]}" if len(CPUS) > 1 else "0"


ERRORS = [
    (
        ["read", "APIC_BAS"],
        64,
        "unknown register 'APIC_BAS': not in the bundled register table; did you mean IA32_APIC_BASE? "
        "(`msrctl registers` lists the names; or give the MSR as a number such as 0x1b)",
    ),
    (
        ["read", "0x1g"],
        64,
        "malformed MSR '0x1g': not a number; write it as hex (0x1f or 1fh), decimal (31), binary (0b11111) "
        "or octal (0o37)",
    ),
    (
        ["write", "tsc_aux", "0x10000000000000000"],
        64,
        "value 0x10000000000000000 is too large: it needs 65 bits but MSR values have 64; "
        "give a value of at most 0xffffffffffffffff",
    ),
    (
        ["read", "-p", "99", "0x1b"],
        2,
        "no such CPU 99: it is absent or offline (online: {cpus}); choose an online CPU with -p, or use -a for all",
    ),
    (
        ["write", "IA32_PKRS", "0x10000000000"],
        4,
        "MSR 0x6e1 (IA32_PKRS) faulted on CPU 0 writing 0x10000000000: not implemented on this CPU, or the value "
        "sets reserved bits; check the register number for this CPU model and the value",
    ),
    (
        ["--device", "/dev/nonexistent-msrdrv", "read", "0x1b"],
        5,
        "cannot open /dev/nonexistent-msrdrv: no such file; check the path given with --device or MSRCTL_DEVICE "
        "(msrdrv's node is /dev/msrdrv)",
    ),
]


def test_errors(python: str) -> None:
    # the process exit status itself, for the two msr-tools codes
    for args, code, message in ERRORS[3:5]:
        res = run(python, *args)
        assert (res.returncode, error_line(res), res.stdout) == (code, message.format(cpus=cpu_list()), ""), args
    for res, (args, code, message) in zip(run_many(python, [a for a, _, _ in ERRORS]), ERRORS):
        assert (res.returncode, error_line(res), res.stdout) == (code, message.format(cpus=cpu_list()), ""), args


# --- unprivileged users ----------------------------------------------------------------


def as_user(python: str, gid: int) -> tuple[str, ...]:
    prefix = ("setpriv", f"--reuid={NOBODY}", f"--regid={gid}", "--clear-groups")
    probe = subprocess.run([*prefix, python, "-c", "import typer"], capture_output=True, env={"PYTHONPATH": str(ROOT)})
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run {python} with typer (not readable by others)")
    return prefix


def test_permission_denied_outside_group(python: str) -> None:
    prefix = as_user(python, NOBODY)
    res = run(python, "read", "0x1b", prefix=prefix)
    assert res.returncode == 3
    assert error_line(res) == (
        "cannot open /dev/msrdrv: permission denied: the node is root:msr 0660 and you are not in group msr; "
        "join the group: sudo usermod -aG msr $USER, then log in again"
    )
    rep = json.loads(run(python, "status", "--json", prefix=prefix).stdout)
    assert rep["user"]["can_open"] is False and rep["problems"][0]["code"] == 3


def test_group_member_gets_what_the_allowlist_permits(python: str) -> None:
    prefix = as_user(python, grp.getgrnam("msr").gr_gid)
    with Device() as dev:
        allowlist.clear(dev.fd)
        try:
            # deny by default: one line that names what to ask the admin for
            res = run(python, "read", "apic_base", prefix=prefix)
            assert res.returncode == 3 and "Traceback" not in res.stderr
            assert "msrctl allowlist load" in error_line(res), res.stderr
            allowlist.load(dev.fd, [Entry(0x1B, 0)])
            assert ok(run(python, "read", "-a", "apic_base", prefix=prefix)).splitlines() == [
                f"{apic(c):x}" for c in CPUS
            ]
            res = run(python, "write", "tsc_aux", "0x1", prefix=prefix)
            assert res.returncode == 3
            assert error_line(res).startswith("write of MSR 0xc0000103 (IA32_TSC_AUX) on CPU 0 refused"), res.stderr
        finally:
            allowlist.clear(dev.fd)


# --- module ------------------------------------------------------------------------------


def test_load_when_loaded(python: str) -> None:
    out = ok(run(python, "load"))
    assert "is already loaded" in out and "/dev/msrdrv is ready (root:msr 0660)" in out


def test_unload_refuses_while_open(python: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os, sys, time; fd = os.open({DEVICE!r}, os.O_RDWR); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
        res = run(python, "unload")
        assert res.returncode == 6
        assert error_line(res) == (
            "cannot unload msrdrv: it is in use (1 open handle(s) of /dev/msrdrv); "
            "close the programs using it (see: fuser -v /dev/msrdrv) and try again"
        )
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert Path("/sys/module/msrdrv/initstate").read_text().strip() == "live"
