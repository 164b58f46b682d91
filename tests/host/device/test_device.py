"""The library without a device: Batch buffers and flags, CPU_SELF results, Device open modes, Info bits."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from msrctl.device import abi
from msrctl.device.msrdrv import CPU_SELF, Batch, Device, DeviceError, Info, op_error_text


def test_snapshot_sets_the_batch_flag() -> None:
    assert Batch()._hdr.flags == 0 and not Batch().snapshot
    b = Batch(4, snapshot=True)
    assert b._hdr.flags == abi.BATCH_SNAPSHOT and b.snapshot
    b.read(0x10, cpu=0)
    b.clear()
    assert b._hdr.flags == abi.BATCH_SNAPSHOT  # clear() keeps the mode


def test_cpu_self_ops_report_the_cpu_that_ran_them() -> None:
    """The kernel leaves op.cpu as given and says in hdr.self_cpu where CPU_SELF ops ran."""
    b = Batch(4)
    own = b.read(0x10, CPU_SELF)
    named = b.read(0x10, cpu=1)
    tsc = b.rdtsc(CPU_SELF)
    b._hdr.ndone = 3  # what a submission on CPU 3 writes back
    b._hdr.self_cpu = 3
    assert b._ops[own].cpu == CPU_SELF  # the input stays
    assert b.self_cpu == 3
    assert [b.cpu(i) for i in (own, named, tsc)] == [3, 1, 3]
    assert [r.cpu for r in b.results()] == [3, 1, 3]
    assert b.result(tsc).op == "rdtsc"
    b._ops[own].err = -errno.EACCES
    with pytest.raises(Exception, match=r"op 0 \(read MSR 0x10 on CPU 3\): not permitted by the msrdrv allowlist"):
        b.check()


def test_op_error_texts() -> None:
    assert op_error_text(errno.EBADF).startswith("write refused: /dev/msrdrv was opened read-only")
    assert "prctl PR_SET_TSC" in op_error_text(errno.EPERM) and "lockdown" in op_error_text(errno.EPERM)
    assert op_error_text(errno.EACCES).endswith("ask an admin to run: sudo msrctl allowlist load --profile telemetry")


def info(access: int) -> Info:
    return Info(1, 1024, 0, 2, access, 0, "0.1.0", 64)


def test_info_access_bits() -> None:
    member = info(abi.ACCESS_WRITE | abi.ACCESS_FMODE_WRITE)
    assert (member.rawio, member.admin, member.fmode_write, member.writes_allowed) == (False, False, True, True)
    root = info(abi.ACCESS_RAWIO | abi.ACCESS_ADMIN | abi.ACCESS_WRITE | abi.ACCESS_LOCKDOWN)
    assert (root.rawio, root.admin, root.fmode_write, root.writes_allowed) == (True, True, False, False)
    assert member.section_ops == 64


class FakeOpen:
    """os.open that refuses O_RDWR with EACCES, as a 0640 root:msr node does for the group."""

    def __init__(self, real: Any, refuse: int = errno.EACCES) -> None:
        self.real = real
        self.refuse = refuse
        self.modes: list[int] = []

    def __call__(self, path: str, flags: int) -> int:
        self.modes.append(flags & os.O_ACCMODE)
        if flags & os.O_ACCMODE == os.O_RDWR:
            raise OSError(self.refuse, os.strerror(self.refuse), path)
        return int(self.real(path, flags))


@pytest.fixture
def node(tmp_path: Path) -> str:
    path = tmp_path / "msrdrv"
    path.write_bytes(b"")
    return str(path)


def test_device_opens_read_write_by_default(node: str) -> None:
    with Device(node) as dev:
        assert dev.writable
        assert os.get_inheritable(dev.fd) is False


def test_device_falls_back_to_read_only(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpen(os.open)
    monkeypatch.setattr(os, "open", fake)
    with Device(node) as dev:
        assert not dev.writable
    assert fake.modes == [os.O_RDWR, os.O_RDONLY]


def test_device_write_true_does_not_fall_back(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpen(os.open)
    monkeypatch.setattr(os, "open", fake)
    with pytest.raises(DeviceError) as e:
        Device(node, write=True)
    assert e.value.errno == errno.EACCES and fake.modes == [os.O_RDWR]


def test_device_write_false_opens_read_only(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpen(os.open)
    monkeypatch.setattr(os, "open", fake)
    with Device(node, write=False) as dev:
        assert not dev.writable
    assert fake.modes == [os.O_RDONLY]


def test_only_eacces_falls_back(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpen(os.open, errno.ENXIO)  # the node exists but no driver answers
    monkeypatch.setattr(os, "open", fake)
    with pytest.raises(DeviceError) as e:
        Device(node)
    assert e.value.errno == errno.ENXIO and fake.modes == [os.O_RDWR]


def test_device_missing(tmp_path: Path) -> None:
    with pytest.raises(DeviceError) as e:
        Device(str(tmp_path / "none"))
    assert e.value.errno == errno.ENOENT


def test_device_error_is_an_os_error_with_errno_and_strerror() -> None:
    try:
        Device("/nonexistent/msrdrv")
    except OSError as e:  # callers that only know OSError catch it
        assert isinstance(e, DeviceError)
        assert e.errno == errno.ENOENT and e.strerror == os.strerror(errno.ENOENT)
        assert "/nonexistent/msrdrv" in str(e)
    else:
        raise AssertionError("opening a missing node did not fail")


def test_batch_ops_accept_register_names() -> None:
    b = Batch(4)
    assert b.read("IA32_APIC_BASE", 0) == 0 and b.read("apic_base", 1) == 1
    b.write("IA32_PKRS", 0, cpu=0)
    assert [b._ops[i].msr for i in range(3)] == [0x1B, 0x1B, 0x6E1]
    with pytest.raises(ValueError, match="unknown register 'IA32_NOPE'"):
        b.read("IA32_NOPE")
    assert len(b) == 3  # the refused op was not queued


def test_the_package_is_typed_and_exports_device_to_type_checkers() -> None:
    import ast

    import msrctl

    root = Path(msrctl.__file__).parent
    assert (root / "py.typed").exists()
    tree = ast.parse((root / "__init__.py").read_text())
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    names = {a.name for n in guarded for i in ast.walk(n) if isinstance(i, ast.ImportFrom) for a in i.names}
    assert set(msrctl.__all__) - {"__version__"} <= names


def processed(b: Batch, n: int) -> None:
    """What a submission that processed n ops writes back into the header."""
    b._hdr.ndone = n


def test_values_and_errors_come_out_in_one_call_in_op_order() -> None:
    b = Batch(8)
    for msr in (0x10, 0x1B, 0x0):
        b.read(msr, cpu=0)
    b._ops[0].value, b._ops[1].value, b._ops[2].err = 2**64 - 1, 0xFEE00900, -errno.EIO
    processed(b, 3)
    assert b.values() == [2**64 - 1, 0xFEE00900, 0]
    assert b.errors() == [0, 0, errno.EIO]
    assert b.values() == [r.value for r in b.results()] and b.errors() == [r.err for r in b.results()]
    processed(b, 1)  # a STOP after the first op: only what was processed
    assert b.values() == [2**64 - 1] and b.errors() == [0]


def test_array_is_a_uint64_copy() -> None:
    np = pytest.importorskip("numpy")
    b = Batch(4)
    b.read(0x10, cpu=0)
    b.read(0x10, cpu=1)
    b._ops[0].value, b._ops[1].value = 2**64 - 1, 5
    processed(b, 2)
    a = b.array()
    assert a.dtype == np.uint64 and a.tolist() == [2**64 - 1, 5]
    b._ops[1].value = 6  # the next submission does not change an array already returned
    assert a.tolist() == [2**64 - 1, 5] and b.array().tolist() == [2**64 - 1, 6]


def test_array_without_numpy_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "numpy", None)  # import numpy now raises ImportError
    b = Batch(2)
    b.read(0x10, cpu=0)
    processed(b, 1)
    with pytest.raises(Exception, match=r"needs numpy .*python3-numpy.*values\(\)"):
        b.array()
    assert b.values() == [0]


def test_ops_default_to_cpu_0_like_the_cli_and_rdmsr() -> None:
    b = Batch(5)
    ops = [b.read(0x10), b.write(0x10, 1), b.rdtsc(), b.nop()]
    assert [b._ops[i].cpu for i in ops] == [0, 0, 0, 0]
    assert b._ops[b.stop()].cpu == CPU_SELF  # a STOP runs nowhere


def test_public_names_are_documented() -> None:
    import msrctl

    for name in msrctl.__all__:
        obj = getattr(msrctl, name)
        if callable(obj):
            assert obj.__doc__, name
            for attr, member in vars(obj).items() if isinstance(obj, type) else []:
                if not attr.startswith("_") and callable(getattr(member, "fget", member)):
                    assert getattr(member, "fget", member).__doc__, f"{name}.{attr}"
