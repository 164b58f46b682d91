"""msrctl on the kernel's own msr driver (/dev/cpu/N/msr): msrdrv unloaded, `modprobe msr`.

The file runs with msrdrv out and msr in; at its end msr goes (unless it was
loaded before) and msrdrv comes back, as the later files' fixtures expect.
Facts of the VM: IA32_APIC_BASE reads 0xfee00900 on CPU 0 and 0xfee00800
elsewhere; writing IA32_PKRS with bit 40 faults.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    MEMBER,
    Batch,
    cpu_driver_in,
    cpu_driver_out,
    load_module,
    module_loaded,
    online_cpus,
    set_cpu_online,
    unload_module,
    wait_for,
)
from conftest import cli_calls as run_many

from msrctl.device import backend
from msrctl.device.msrdrv import CPU_SELF, DeviceError
from msrctl.device.stockmsr import StockDevice

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = [p for p in os.environ.get("MSRCTL_PYTHONS", sys.executable).split(":") if p]
CPUS = online_cpus()
TSC_AUX = 0xC0000103
CAVEAT = f"msrctl: warning: {backend.caveat()}"
# Registers whose value does not change between two reads: msrdrv and the stock driver must agree.
STEADY = [0x1B, TSC_AUX, 0xFE, 0x1A0, 0x277, 0x2FF, 0xC0000080]


def apic(cpu: int) -> int:
    return 0xFEE00900 if cpu == 0 else 0xFEE00800


def msr_node(cpu: int) -> Path:
    return Path(f"/dev/cpu/{cpu}/msr")


@pytest.fixture(scope="module", autouse=True)
def stock_driver() -> Iterator[None]:
    """msrdrv out, msr in for this file; afterwards msr out (if it was out) and msrdrv back."""
    loaded_here = cpu_driver_in("msr")
    yield
    cpu_driver_out("msr", loaded_here)
    if not module_loaded():
        load_module()


@pytest.fixture(autouse=True)
def stock_only(stock_driver: None) -> None:
    """Each test starts with msrdrv unloaded and the msr driver's nodes there (a test may reload msrdrv)."""
    if module_loaded():
        unload_module()
    cpu_driver_in("msr")


@pytest.fixture(params=PYTHONS)
def python(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    e.pop("MSRCTL_BACKEND", None)
    e.pop("MSRCTL_DEVICE", None)
    return e


def run(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "msrctl", *args], capture_output=True, text=True, env=_env(), check=False)


def stock_ok(res: subprocess.CompletedProcess[str]) -> str:
    """A successful first call in its process: stdout, with the caveat as the one stderr line."""
    assert res.returncode == 0, res.stderr
    assert res.stderr == CAVEAT + "\n"
    return res.stdout


def errors_of(res: subprocess.CompletedProcess[str], caveat: bool = True) -> list[str]:
    """The stderr lines after the caveat (which must come first, once), without 'msrctl: error: '."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    if caveat:
        assert lines[0] == CAVEAT and CAVEAT not in lines[1:], res.stderr
        lines = lines[1:]
    assert all(line.startswith("msrctl: error: ") for line in lines), res.stderr
    return [line[len("msrctl: error: ") :] for line in lines]


def cpu_list(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])


# --- read, the caveat, rdtsc -----------------------------------------------------------


def test_read_all_apic_base_and_the_caveat_once(python: str) -> None:
    # one process, several commands and nodes: the caveat comes once, with the first
    calls = [["read", "-a", "0x1b"], ["read", "tsc_aux", "-p", str(CPUS[-1])], ["read", "-a", "apic_base", "-c"]]
    first, aux, again = run_many(python, calls)
    assert stock_ok(first).splitlines() == [f"{apic(c):x}" for c in CPUS]
    assert (aux.returncode, aux.stderr, again.returncode, again.stderr) == (0, "", 0, "")
    assert again.stdout.splitlines() == [f"{apic(c):#x}" for c in CPUS]


def test_rdtsc_is_the_tsc_or_an_error_never_a_zero(python: str) -> None:
    """RDTSC reads IA32_TIME_STAMP_COUNTER through the node; QEMU TCG reads that MSR as 0."""
    with StockDevice() as dev:
        msr_works = all(r.value for r in dev.read(0x10, CPUS))
    res = run(python, "rdtsc", "-a")
    if msr_works:
        assert len(stock_ok(res).split()) == len(CPUS) and all(int(v) > 0 for v in res.stdout.split())
        return
    assert res.returncode == 4 and res.stdout == ""
    assert errors_of(res) == [
        f"RDTSC on CPU {c} failed: the kernel's msr driver reads the TSC as MSR 0x10 (IA32_TIME_STAMP_COUNTER), "
        "which reads 0 here: not implemented (an emulator such as QEMU TCG?); use msrdrv, whose RDTSC runs the "
        "instruction on the CPU: sudo msrctl load"
        for c in CPUS
    ]


# --- write -------------------------------------------------------------------------------


@pytest.fixture
def tsc_aux() -> Iterator[dict[int, int]]:
    """Each CPU's TSC_AUX (Linux keeps the CPU number there), restored afterwards."""
    with StockDevice() as dev:
        original = {r.cpu: r.value for r in dev.read(TSC_AUX, CPUS)}
    yield original
    with StockDevice() as dev:
        b = Batch(2 * len(CPUS))
        for cpu, value in original.items():
            b.write(TSC_AUX, value, cpu)
        assert dev.submit(b) == 0
        assert {r.cpu: r.value for r in dev.read(TSC_AUX, CPUS)} == original


def test_write_and_read_back_tsc_aux(python: str, tsc_aux: dict[int, int]) -> None:
    calls = []
    for cpu in CPUS:
        calls += [["write", "IA32_TSC_AUX", hex(0x5A00 + cpu), "-p", str(cpu)], ["read", "tsc_aux", "-p", str(cpu)]]
    # masked: a read then a write per CPU, only the low byte changes, the value written comes back
    calls += [["write", "tsc_aux", "0x7f", "--mask", "0xff", "-a", "--json"], ["read", "-a", "tsc_aux", "-c"]]
    res = run_many(python, calls)
    assert res[0].stderr == CAVEAT + "\n" and all(r.stderr == "" for r in res[1:])
    assert all(r.returncode == 0 for r in res)
    assert [r.stdout for r in res[:-2]] == [x for cpu in CPUS for x in ("", f"{0x5A00 + cpu:x}\n")]
    assert [(r["cpu"], r["value"]) for r in json.loads(res[-2].stdout)] == [(c, 0x5A7F) for c in CPUS]
    assert res[-1].stdout.splitlines() == ["0x5a7f"] * len(CPUS)


def test_a_faulting_write_exits_4_and_the_other_ops_run(python: str, tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    last = CPUS[-1]
    ops.write_text(f"read 0x1b\nwrite IA32_PKRS 0x10000000000\nread 0x1b cpu {last}\n")
    res, single = run_many(python, [["batch", str(ops)], ["write", "IA32_PKRS", "0x10000000000"]])
    assert res.returncode == 4
    assert res.stdout.splitlines() == [
        "0 read 0x1b(IA32_APIC_BASE) 0xfee00900",
        "0 write 0x6e1(IA32_PKRS) error:EIO",
        f"{last} read 0x1b(IA32_APIC_BASE) {apic(last):#x}",
    ]
    assert errors_of(res) == [
        f"{ops}:2: MSR 0x6e1 (IA32_PKRS) faulted on CPU 0 writing 0x10000000000: not implemented on this CPU, "
        "or the value sets reserved bits; check the register number for this CPU model and the value"
    ]
    assert single.returncode == 4
    assert errors_of(single, caveat=False)[0].startswith("MSR 0x6e1 (IA32_PKRS) faulted on CPU 0 writing")


# --- CPUs -------------------------------------------------------------------------------


@contextlib.contextmanager
def cpu1_offline() -> Iterator[None]:
    """CPU 1 offline for the block, then online again with its node back."""
    if 1 not in CPUS:
        pytest.skip("needs CPU 1")
    set_cpu_online(1, False)
    try:
        yield
    finally:
        set_cpu_online(1, True)
        wait_for(lambda: msr_node(1).exists(), "/dev/cpu/1/msr to come back with CPU 1")


def test_an_offline_cpu_exits_2(python: str) -> None:
    with StockDevice() as dev:  # CPU 1's node opened while it is online ...
        dev.read(0x1B, [1])
        with cpu1_offline():
            res, every = run_many(python, [["read", "-p", "1", "0x1b"], ["read", "-a", "0x1b"]])
            assert res.returncode == 2 and res.stdout == ""
            online = [c for c in CPUS if c != 1]
            assert errors_of(res) == [
                f"no such CPU 1: it is absent or offline (online: {cpu_list(online)}); "
                "choose an online CPU with -p, or use -a for all"
            ]
            assert (every.returncode, every.stderr) == (0, "")
            assert every.stdout.splitlines() == [f"{apic(c):x}" for c in online]
            # ... then offline: the driver itself says ENXIO, as msrdrv would
            [r] = dev.read(0x1B, [1])
            assert r.err == errno.ENXIO


# --- batch, and the same results as msrdrv ---------------------------------------------

BATCH = """\
read  IA32_TSC_AUX
write tsc_aux 0x77
read  0xc0000103
read  apic_base cpus all
nop
stop
read  0x1b
"""


def test_batch_file(python: str, tsc_aux: dict[int, int], tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text(BATCH)
    lines = stock_ok(run(python, "batch", str(ops))).splitlines()
    n = len(CPUS)
    assert lines[:3] == [
        f"0 read 0xc0000103(IA32_TSC_AUX) {tsc_aux[0]:#x}",
        "0 write 0xc0000103(IA32_TSC_AUX) 0x77",
        "0 read 0xc0000103(IA32_TSC_AUX) 0x77",
    ]
    assert lines[3 : 3 + n] == [f"{c} read 0x1b(IA32_APIC_BASE) {apic(c):#x}" for c in CPUS]
    assert lines[3 + n :] == ["- nop", "- stop", "0 read 0x1b(IA32_APIC_BASE) not-run"]


def test_same_results_as_msrdrv(python: str, tmp_path: Path) -> None:
    ops = tmp_path / "ops.json"
    ops.write_text(json.dumps([{"op": "read", "msr": hex(m), "cpus": "all"} for m in STEADY]))
    calls = [["batch", "--json", str(ops)], ["read", "-a", "0x1b"]]
    stock, text = run_many(python, calls)
    records = json.loads(stock_ok(stock))
    assert len(records) == len(STEADY) * len(CPUS) and not any("error" in r for r in records)
    load_module()  # auto now takes msrdrv: no caveat
    try:
        batch, read, status = run_many(python, [*calls, ["status"]])
        assert (batch.returncode, batch.stderr, read.returncode, read.stderr) == (0, "", 0, "")
        assert json.loads(batch.stdout) == records
        assert read.stdout == text.stdout
        assert "backend:   msrdrv (/dev/msrdrv)\n" in status.stdout
    finally:
        unload_module()


# --- the library -------------------------------------------------------------------------


def test_open_device_gives_the_stock_driver_and_cpu_self_is_one_cpu() -> None:
    affinity = os.sched_getaffinity(0)
    with backend.open_device(quiet=True) as dev:
        assert isinstance(dev, StockDevice) and dev.backend == "msr"
        b = Batch(8)
        own = b.read(TSC_AUX, CPU_SELF)
        per_cpu = [b.read(TSC_AUX, c) for c in CPUS]
        assert dev.submit(b) == 0
        assert b.self_cpu in CPUS and b.cpu(own) == b.self_cpu
        assert b.value(own) == b.value(per_cpu[CPUS.index(b.self_cpu)])
        with pytest.raises(DeviceError, match="the INFO ioctl needs msrdrv"):
            dev.info()
    assert os.sched_getaffinity(0) == affinity


# --- status, permissions, forcing a backend ----------------------------------------------


def test_status_names_the_backend(python: str) -> None:
    out, js = run_many(python, [["status"], ["status", "--json"]])
    assert out.returncode == 0 and out.stderr == ""
    assert f"backend:   msr: {backend.caveat()}\n" in out.stdout
    assert "note:      msrdrv is not loaded: msrctl uses the kernel's msr driver (see backend)\n" in out.stdout
    assert out.stdout.endswith("status:    ready\n")
    rep = json.loads(js.stdout)
    assert rep["ok"] and rep["backend"]["name"] == "msr" and rep["backend"]["node"] == f"/dev/cpu/{CPUS[0]}/msr"


def test_group_member_gets_the_permission_error(python: str) -> None:
    res, status = run_many(python, [["read", "0x1b"], ["status", "--json"]], prefix=tuple(MEMBER))
    assert res.returncode == 3 and res.stdout == ""
    assert errors_of(res, caveat=False) == [
        f"cannot open /dev/cpu/{CPUS[0]}/msr: the kernel's msr driver is for root only (its nodes are root:root "
        "0600 and it requires CAP_SYS_RAWIO); run as root; or have msrdrv loaded (sudo msrctl load), whose "
        "allowlist lets group msr in"
    ]
    rep = json.loads(status.stdout)
    assert rep["backend"]["can_open"] is False
    assert [p["code"] for p in rep["problems"]] == [5, 3]  # msrdrv missing first: loading it is the way in


def test_forcing_msrdrv_while_it_is_unloaded_exits_5(python: str) -> None:
    forced, allow = run_many(python, [["--backend", "msrdrv", "read", "0x1b"], ["allowlist", "show"]])
    assert forced.returncode == 5 and forced.stdout == ""
    assert errors_of(forced, caveat=False) == [
        "cannot open /dev/msrdrv: msrdrv module not loaded; run `msrctl load` (as root), "
        "since --backend msrdrv (or MSRCTL_BACKEND) asks for msrdrv only"
    ]
    assert allow.returncode == 5
    assert errors_of(allow, caveat=False)[0].startswith("the allowlist needs msrdrv: ")


# --- decode, power, record on the stock driver ----------------------------------------


def test_decode_power_and_record_run_on_the_stock_driver(python: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.csv"
    dec, power, rec = run_many(
        python,
        [["decode", "-a", "IA32_APIC_BASE"], ["power", "show"], ["record", "-i", "50ms", "-n", "2", "-o", str(out)]],
    )
    assert stock_ok(dec).splitlines()[0] == "IA32_APIC_BASE (0x1b) on CPU 0 = 0xfee00900"
    assert "  BSP       8  1        this CPU is the bootstrap processor: yes" in dec.stdout
    # QEMU has no RAPL: absent, exit 4, on this driver as on msrdrv
    assert power.returncode == 4 and "RAPL absent" in power.stdout and " W" not in power.stdout
    assert rec.returncode == 0, rec.stderr
    rows = out.read_text().splitlines()
    assert rows[0].startswith("time_s,") and len(rows) > 2
