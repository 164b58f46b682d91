"""The stock-driver backend without a kernel: which backend is chosen in a fake sysroot, the
caveat printed once, the errno mapping, and StockDevice's batch bookkeeping against plain files
standing in for /dev/cpu/N/msr (pread/pwrite at offset MSR, as the driver takes them)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from msrctl import errors
from msrctl.admin import diagnose, render, status
from msrctl.device import abi, backend
from msrctl.device.msrdrv import CPU_SELF, Batch, Device, DeviceError
from msrctl.device.stockmsr import StockDevice, stock_errno

ROOT = Path(__file__).resolve().parents[3]
APIC, TSC, REG, ABSENT = 0x1B, 0x10, 0x100, 0x1000  # ABSENT lies past each fake node's end: reads fault
SIZE = 0x200


@pytest.fixture
def sysroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-1\n")
    (root / "proc").mkdir()
    (root / "proc/modules").write_text("")  # modules can load; msrdrv is not loaded
    monkeypatch.setenv("MSRCTL_SYSROOT", str(root))
    monkeypatch.setattr(backend, "preferred", backend.AUTO)
    return root


def put(node: Path, msr: int, value: int) -> None:
    with node.open("r+b") as f:
        f.seek(msr)
        f.write(value.to_bytes(8, "little"))


def get(node: Path, msr: int) -> int:
    with node.open("rb") as f:
        f.seek(msr)
        return int.from_bytes(f.read(8), "little")


def make_nodes(root: Path, cpus: list[int]) -> Path:
    """Fake msr nodes: APIC_BASE as QEMU shows it, a TSC and a scratch register per CPU."""
    cpu_dir = root / "dev/cpu"
    for cpu in cpus:
        node = cpu_dir / str(cpu) / "msr"
        node.parent.mkdir(parents=True)
        node.write_bytes(bytes(SIZE))
        put(node, APIC, 0xFEE00900 if cpu == 0 else 0xFEE00800)
        put(node, TSC, 1000 + cpu)
        put(node, REG, 0x1100 * (cpu + 1))
    return cpu_dir


@pytest.fixture
def nodes(sysroot: Path) -> Path:
    return make_nodes(sysroot, sorted({0, 1} | os.sched_getaffinity(0)))


@pytest.fixture
def fresh_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_warned", [])


# --- choice -------------------------------------------------------------------------


def test_auto_prefers_msrdrv_then_the_stock_driver(sysroot: Path) -> None:
    default = str(sysroot / "dev/msrdrv")
    assert backend.choose(default) == backend.MSRDRV  # nothing there: msrdrv's error explains
    make_nodes(sysroot, [0, 1])
    assert backend.choose(default) == backend.MSR
    assert backend.choose("/dev/msrdrv") == backend.MSR  # the real default path is absent here too
    (sysroot / "dev/msrdrv").write_text("")
    assert backend.choose(default) == backend.MSRDRV
    # a device path the user chose means msrdrv, whatever is there
    assert backend.choose(str(sysroot / "other")) == backend.MSRDRV


def test_forced_and_preferred_backends(sysroot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = str(sysroot / "dev/msrdrv")
    assert backend.choose(default, "msr") == backend.MSR  # even with no node: its open error explains
    make_nodes(sysroot, [0])
    assert backend.choose(default, "msrdrv") == backend.MSRDRV
    monkeypatch.setattr(backend, "preferred", "msrdrv")  # what the CLI's --backend sets
    assert backend.choose(default) == backend.MSRDRV and backend.requested() == "msrdrv"
    assert backend.choose(default, "auto") == backend.MSR
    with pytest.raises(ValueError, match="unknown backend 'stock': choose one of auto, msrdrv, msr"):
        backend.choose(default, "stock")


def test_the_probe_node_is_the_first_online_cpus(sysroot: Path) -> None:
    (sysroot / "sys/devices/system/cpu/online").write_text("2-3\n")
    make_nodes(sysroot, [0])
    assert backend.stock_node() == f"{sysroot}/dev/cpu/2/msr"
    assert backend.choose(str(sysroot / "dev/msrdrv")) == backend.MSRDRV
    make_nodes(sysroot, [2])
    assert backend.choose(str(sysroot / "dev/msrdrv")) == backend.MSR


def test_open_device_and_the_caveat_once(nodes: Path, fresh_warning: None, capsys: pytest.CaptureFixture[str]) -> None:
    with backend.open_device() as dev:
        assert isinstance(dev, StockDevice) and dev.backend == "msr" and dev.writable
        assert dev.path == str(nodes)
    with backend.open_device(), backend.open_device(quiet=True):
        pass
    err = capsys.readouterr().err
    assert err == f"msrctl: warning: {backend.caveat()}\n"
    assert err == (
        f"msrctl: warning: using the kernel's msr driver ({nodes}/N/msr), not msrdrv: one system call per op, "
        "so a CPU's ops are not atomic (a masked write is a read then a write), and no allowlist (root only); "
        "for msrdrv: sudo msrctl load\n"
    )
    (nodes.parent / "msrdrv").write_text("")  # msrdrv's node appears: auto takes it
    with backend.open_device(str(nodes.parent / "msrdrv")) as dev:
        assert isinstance(dev, Device) and dev.backend == "msrdrv"
    assert capsys.readouterr().err == ""


def test_quiet_open_leaves_the_warning_for_later(
    nodes: Path, fresh_warning: None, capsys: pytest.CaptureFixture
) -> None:
    backend.open_device(quiet=True).close()
    assert capsys.readouterr().err == ""
    backend.open_device().close()
    assert capsys.readouterr().err.count("msrctl: warning: ") == 1


# --- errno mapping and messages ------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "at_open", "expected"),
    [
        (errno.ENOENT, True, errno.ENXIO),  # the driver removes an offline CPU's node
        (errno.ENODEV, True, errno.ENXIO),
        (errno.ENXIO, True, errno.ENXIO),  # open of an offline CPU's node
        (errno.EPERM, True, errno.EACCES),  # no CAP_SYS_RAWIO: not permitted, as msrdrv says it
        (errno.EACCES, True, errno.EACCES),
        (errno.EIO, False, errno.EIO),  # rdmsr/wrmsr faulted
        (errno.ENXIO, False, errno.ENXIO),  # the CPU went offline with its node open
        (errno.EPERM, False, errno.EPERM),  # a write under lockdown or msr.allow_writes=off
        (errno.EBADF, False, errno.EBADF),  # a write through a read-only node
    ],
)
def test_errno_mapping(err: int, at_open: bool, expected: int) -> None:
    assert stock_errno(err, at_open) == expected


def test_stock_open_errors() -> None:
    e = diagnose.stock_open_error("/dev/cpu/0/msr", errno.EACCES)
    assert e.code == errors.PERMISSION == 3
    assert e.message == (
        "cannot open /dev/cpu/0/msr: the kernel's msr driver is for root only (its nodes are root:root 0600 "
        "and it requires CAP_SYS_RAWIO); run as root; or have msrdrv loaded (sudo msrctl load), whose "
        "allowlist lets group msr in"
    )
    assert diagnose.stock_open_error("/dev/cpu/0/msr", errno.EPERM).code == 3
    e = diagnose.stock_open_error("/dev/cpu/0/msr", errno.ENOENT)
    assert e.code == errors.NOT_LOADED and "as root: modprobe msr" in e.fix


def test_writes_refused_by_the_stock_driver_say_why() -> None:
    why, fix = diagnose.writes_reason_text("msr_off")
    assert "msr.allow_writes=off" in why and fix == "as root: echo on > /sys/module/msr/parameters/allow_writes"


# --- StockDevice against plain files --------------------------------------------------


@pytest.fixture
def dev(nodes: Path) -> Iterator[StockDevice]:
    with StockDevice(str(nodes)) as d:
        yield d


def test_reads_writes_and_masked_writes(dev: StockDevice, nodes: Path) -> None:
    b = Batch(8)
    b.read(APIC, 0)
    b.read(APIC, 1)
    b.write(REG, 0xABCD, 1)
    b.read(REG, 1)
    b.write(REG, 0x00FF, 0, mask=0x0FF0)
    b.write(REG, 0x77, 0, mask=(1 << 64) - 1)  # all bits: a plain write, as msrdrv
    b.rdtsc(1)
    assert dev.submit(b) == 0
    assert b.values() == [0xFEE00900, 0xFEE00800, 0xABCD, 0xABCD, 0x10F0, 0x77, 1001]
    assert b.errors() == [0] * 7 and (b.done, b._hdr.nerrs) == (7, 0)
    assert get(nodes / "0/msr", REG) == 0x77 and get(nodes / "1/msr", REG) == 0xABCD


def test_faults_absent_cpus_and_stop(dev: StockDevice, nodes: Path) -> None:
    b = Batch(8)
    b.read(ABSENT, 0)  # past the node's end: the short read stands for a fault
    b.write(ABSENT, 1, 0, mask=0xFF)  # a masked write whose read faults writes nothing
    b.read(APIC, 99)  # no node for CPU 99: ENXIO, as msrdrv
    b.nop()
    b.read(APIC, 0)
    b.stop()
    after = b.read(REG, 0)
    b.set_value(after, 0x5A5A)
    assert dev.submit(b) == 3
    assert b.errors() == [errno.EIO, errno.EIO, errno.ENXIO, 0, 0, 0]  # the STOP counts, later ops do not
    assert (b.done, b._hdr.nerrs) == (6, 3) and b.value(4) == 0xFEE00900
    assert b._ops[after].err == 0 and b.value(after) == 0x5A5A  # neither run nor written back
    assert (nodes / "0/msr").stat().st_size == SIZE


def test_rdtsc_where_the_tsc_msr_reads_0_is_an_error_not_a_time(dev: StockDevice, nodes: Path) -> None:
    put(nodes / "1/msr", TSC, 0)  # as QEMU TCG shows IA32_TIME_STAMP_COUNTER
    b = Batch(3)
    b.rdtsc(0)
    tsc1 = b.rdtsc(1)
    b.set_value(tsc1, 7)
    b.read(TSC, 1)  # a READ is the register as it is, 0 included, as msrdrv's READ
    assert dev.submit(b) == 1
    assert b.errors() == [0, errno.EIO, 0] and b.values() == [1000, 7, 0]
    e = diagnose.op_error("rdtsc", 1, 0, None, errno.EIO)
    assert e.code == errors.IO_ERROR and e.message == (
        "RDTSC on CPU 1 failed: the kernel's msr driver reads the TSC as MSR 0x10 (IA32_TIME_STAMP_COUNTER), "
        "which reads 0 here: not implemented (an emulator such as QEMU TCG?); use msrdrv, whose RDTSC runs the "
        "instruction on the CPU: sudo msrctl load"
    )


def test_nodes_open_lazily_and_stay_open(nodes: Path) -> None:
    dev = StockDevice(str(nodes))
    assert sorted(dev._fds) == [0]  # the probe
    b = Batch(2)
    b.read(APIC, 1)
    dev.submit(b)
    fds = dict(dev._fds)
    assert sorted(fds) == [0, 1]
    dev.submit(b)
    assert dev._fds == fds  # reused, not reopened
    dev.close()
    dev.close()
    assert dev._fds == {}


def test_cpu_self_pins_for_the_batch_and_restores_the_affinity(dev: StockDevice) -> None:
    before = os.sched_getaffinity(0)
    b = Batch(3)
    b.read(REG, CPU_SELF)
    b.rdtsc(CPU_SELF)
    b.read(APIC, 0)
    assert dev.submit(b) == 0
    cpu = b.self_cpu
    assert cpu in before and os.sched_getaffinity(0) == before
    assert [b.cpu(0), b.cpu(1)] == [cpu, cpu]
    assert b.values() == [0x1100 * (cpu + 1), 1000 + cpu, 0xFEE00900]


def test_read_only_nodes_refuse_writes_with_ebadf(nodes: Path) -> None:
    with StockDevice(str(nodes), write=False) as ro:
        assert not ro.writable
        b = Batch(2)
        b.write(REG, 1, 0)
        b.read(REG, 0)
        assert ro.submit(b) == 1 and b.errors() == [errno.EBADF, 0]


def test_whole_batch_refusals_run_nothing(dev: StockDevice, nodes: Path) -> None:
    snap = Batch(1, snapshot=True)
    snap.write(REG, 1, 0)
    with pytest.raises(DeviceError, match="snapshot batches need msrdrv") as e:
        dev.submit(snap)
    assert e.value.errno == errno.EOPNOTSUPP
    bad = Batch(2)
    bad.write(REG, 1, 0)
    bad.read(REG, 0)
    bad._ops[1].op = 9
    with pytest.raises(DeviceError) as e:
        dev.submit(bad)
    assert e.value.errno == errno.EINVAL and get(nodes / "0/msr", REG) == 0x1100
    bad._ops[1].op = abi.OP_READ
    bad._hdr.abi_version = 2
    with pytest.raises(DeviceError) as e:
        dev.submit(bad)
    assert e.value.errno == errno.EPROTO and get(nodes / "0/msr", REG) == 0x1100


def test_info_says_it_needs_msrdrv(dev: StockDevice) -> None:
    with pytest.raises(DeviceError, match="the INFO ioctl needs msrdrv") as e:
        dev.info()
    assert e.value.errno == errno.ENOTTY


def test_a_missing_driver_fails_at_open_naming_the_node(sysroot: Path) -> None:
    with pytest.raises(DeviceError) as e:
        StockDevice(str(sysroot / "dev/cpu"), probe_cpu=0)
    assert e.value.errno == errno.ENOENT and e.value.filename == f"{sysroot}/dev/cpu/0/msr"


def test_library_read(dev: StockDevice) -> None:
    assert [(r.cpu, r.value, r.err) for r in dev.read(APIC, [0, 1, 7])] == [
        (0, 0xFEE00900, 0),
        (1, 0xFEE00800, 0),
        (7, 0, errno.ENXIO),
    ]


# --- status ----------------------------------------------------------------------------


def test_status_names_the_stock_backend(nodes: Path, sysroot: Path) -> None:
    rep = status.report(str(sysroot / "dev/msrdrv"))
    assert rep["backend"] == {
        "name": "msr",
        "requested": "auto",
        "node": f"{nodes}/0/msr",
        "can_open": True,
        "caveat": backend.caveat(),
    }
    # read/write work, so msrdrv missing is a note, not a problem
    assert rep["ok"] and "msrdrv is not loaded: msrctl uses the kernel's msr driver (see backend)" in rep["notes"]
    text = render.status_text(rep)
    assert f"backend:   msr: {backend.caveat()}\n" in text and text.endswith("status:    ready\n")
    rep = status.report(str(sysroot / "dev/msrdrv"), "msrdrv")
    assert rep["backend"] == {"name": "msrdrv", "requested": "msrdrv"} and rep["problems"][0]["code"] == 5
    assert f"backend:   msrdrv ({sysroot}/dev/msrdrv)\n" in render.status_text(rep)


# --- the CLI ---------------------------------------------------------------------------


def cli(sysroot: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), MSRCTL_SYSROOT=str(sysroot), MSRCTL_DEVICE=str(sysroot / "dev/msrdrv"))
    e.pop("MSRCTL_BACKEND", None)
    e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "msrctl", *args], input=stdin, capture_output=True, text=True, env=e, check=False
    )


def test_cli_reads_writes_and_batches_through_the_stock_driver(nodes: Path, sysroot: Path) -> None:
    warning = f"msrctl: warning: {backend.caveat()}\n"  # the caveat names the sysroot's nodes
    res = cli(sysroot, "read", "-p", "0,1", "apic_base")
    assert (res.returncode, res.stdout, res.stderr) == (0, "fee00900\nfee00800\n", warning)
    res = cli(sysroot, "write", "0x100", "0x3c", "--mask", "0xf0", "-p", "1", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)[0]["value"] == 0x2230
    res = cli(sysroot, "batch", stdin="read 0x100 cpu 1\nread 0x1000\nread 0x1b cpu 5\n")
    assert res.stdout.splitlines() == [
        "1 read 0x100 0x2230",
        "0 read 0x1000 error:EIO",
        "5 read 0x1b(IA32_APIC_BASE) error:ENXIO",
    ]
    lines = res.stderr.splitlines()
    assert res.returncode == 4 and lines[0] == warning.rstrip() and len(lines) == 3
    assert lines[2].startswith("msrctl: error: <stdin>:3: no such CPU 5: it is absent or offline")


def test_cli_backend_option_and_variable(nodes: Path, sysroot: Path) -> None:
    res = cli(sysroot, "--backend", "msrdrv", "read", "0x1b")
    assert res.returncode == 5 and res.stdout == ""
    assert res.stderr.endswith(
        "msrdrv module not loaded; run `msrctl load` (as root), since --backend msrdrv (or MSRCTL_BACKEND) "
        "asks for msrdrv only\n"
    )
    assert cli(sysroot, "rdtsc", "-p", "1", MSRCTL_BACKEND="msr").stdout == "1001\n"
    res = cli(sysroot, "--backend", "stock", "read", "0x1b")
    assert res.returncode == 64 and "Invalid value for '--backend'" in res.stderr
    res = cli(sysroot, "allowlist", "show")
    assert res.returncode == 5 and res.stderr == (
        "msrctl: error: the allowlist needs msrdrv: the backend in use is the kernel's msr driver (msrdrv is not "
        "loaded, or --backend msr), which has none; load msrdrv: sudo msrctl load\n"
    )


def test_cli_forced_stock_backend_without_the_driver(sysroot: Path) -> None:
    res = cli(sysroot, "read", "0x1b", MSRCTL_BACKEND="msr")
    assert res.returncode == 5 and res.stderr == (
        f"msrctl: error: cannot open {sysroot}/dev/cpu/0/msr: the kernel's msr driver is not loaded (asked for "
        "with --backend msr or MSRCTL_BACKEND); as root: modprobe msr; or use msrdrv: sudo msrctl load\n"
    )
