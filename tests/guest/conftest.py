"""Fixtures for the in-guest suite: runs as root inside the QEMU guest against
the real msrdrv module built from dkms/ for the guest's kernel."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from msrctl.device import abi  # noqa: E402
from msrctl.device.abi import ffi  # noqa: E402
from msrctl.device.msrdrv import Batch, Device  # noqa: E402

NODE = Path(abi.DEVICE)
# What the module measured at load (or root set) for one timer interrupt: the sampler budget's charge.
SAMPLER_IRQ_NS = Path("/sys/module/msrdrv/parameters/sampler_irq_ns")
KVER = os.environ.get("MSRDRV_KVER") or os.uname().release


def pytest_runtest_setup(item: pytest.Item) -> None:
    """make test-debug: snapshot the module's coverage before lockdown
    (test_zz_lockdown.py) closes debugfs for the rest of the boot."""
    out = os.environ.get("MSRDRV_GCOV_OUT")
    if out and item.path.name == "test_zz_lockdown.py" and not _gcov_snapshot:
        _gcov_snapshot.append(out)
        subprocess.run(["sh", str(REPO / "tests/debug/gcov-collect.sh"), out], check=False)


_gcov_snapshot: list[str] = []


def module_path() -> Path:
    return Path(os.environ.get("MSRDRV_KO", REPO / "dkms" / "msrdrv.ko"))


def module_loaded() -> bool:
    return Path("/sys/module/msrdrv").exists()


def wait_for(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def node_ready() -> bool:
    """The node exists and udev has applied the rule (group msr)."""
    try:
        return NODE.stat().st_gid == grp.getgrnam("msr").gr_gid
    except (FileNotFoundError, KeyError):
        return False


def load_module(*params: str) -> None:
    subprocess.run(["insmod", str(module_path()), *params], check=True)
    wait_for(node_ready, "udev to create /dev/msrdrv with group msr")


def unload_module() -> None:
    subprocess.run(["rmmod", "msrdrv"], check=True)
    wait_for(lambda: not NODE.exists(), "/dev/msrdrv to disappear")


def cpu_driver_in(name: str) -> bool:
    """The kernel's per-CPU driver `name` (msr, cpuid) with a node for every online CPU;
    True when this call loaded it (the caller then passes that to cpu_driver_out).  The
    debug kernel (make test-debug) has them built in, where modprobe cannot find them:
    the class directory says the driver is there already."""
    loaded_here = False
    if not Path(f"/sys/class/{name}").is_dir():
        subprocess.run(["modprobe", name], check=True)
        loaded_here = True
    wait_for(lambda: all(Path(f"/dev/cpu/{c}/{name}").exists() for c in online_cpus()), f"/dev/cpu/N/{name}")
    return loaded_here


def cpu_driver_out(name: str, loaded_here: bool) -> None:
    """Unload driver `name` if cpu_driver_in loaded it (a built-in one stays)."""
    if loaded_here and Path(f"/sys/module/{name}/initstate").exists():
        subprocess.run(["rmmod", name], check=True)


@pytest.fixture(scope="session", autouse=True)
def module() -> Iterator[None]:
    if not module_loaded():
        load_module()
    yield


@pytest.fixture
def loaded() -> None:
    """Per test: make sure a test that unloaded the module left it loaded."""
    if not module_loaded():
        load_module()


@pytest.fixture
def dev(loaded: None) -> Iterator[Device]:
    with Device() as d:
        yield d


def online_cpus() -> list[int]:
    cpus: list[int] = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


@pytest.fixture
def cpus() -> list[int]:
    return online_cpus()


def raw_batch(
    fd: int, ops: Any, nops: int, abi_version: int = abi.ABI_VERSION, flags: int = 0, self_cpu: int = 0
) -> tuple[int, Any]:
    """Issue MSRDRV_IOC_BATCH with a hand-made header; returns (0 or -errno, header)."""
    hdr: Any = ffi.new("struct msrdrv_batch *")
    hdr.abi_version = abi_version
    hdr.flags = flags
    hdr.self_cpu = self_cpu
    hdr.nops = nops
    hdr.ops = ops if isinstance(ops, int) else abi.address(ops)
    return abi.ioctl(fd, abi.IOC_BATCH, hdr), hdr


def privdrop(user: str, keep_groups: bool = True) -> list[str]:
    """The setpriv prefix that runs a command as `user` with no capabilities ([] for root)."""
    if user == "root":
        return []
    groups = "--init-groups" if keep_groups else "--clear-groups"
    gid = pwd.getpwnam(user).pw_gid
    return ["setpriv", f"--reuid={user}", f"--regid={gid}", groups, "--inh-caps=-all", "--bounding-set=-all"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")


def run_as(user: str, code: str, keep_groups: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet as `user` (its own groups, no capabilities)."""
    argv = [*privdrop(user, keep_groups), sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)


MEMBER = privdrop("msruser")


def as_member(*argv: str, wait: bool = True) -> Any:
    """Run argv as msruser (group msr, no capabilities); Popen when wait is False."""
    if not wait:
        return subprocess.Popen([*MEMBER, *argv], stdout=subprocess.PIPE, text=True, env=_env())
    return subprocess.run([*MEMBER, *argv], capture_output=True, text=True, env=_env(), check=False)


_MANY = """
import contextlib, io, json, sys
from msrctl.cli.main import main
out = []
for args in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        code = main(args)
    out.append([code, o.getvalue(), e.getvalue()])
print(json.dumps(out))
"""


def run_many(
    calls: list[list[str]], python: str = sys.executable, prefix: tuple[str, ...] = ()
) -> list[tuple[int, str, str]]:
    """Several `msrctl` calls in one interpreter (start-up under TCG costs seconds), as root
    or under prefix (e.g. MEMBER): (exit code, stdout, stderr) of each."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    env.pop("MSRCTL_DEVICE", None)
    env.pop("MSRCTL_BACKEND", None)
    res = subprocess.run([*prefix, python, "-c", _MANY, json.dumps(calls)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return [(code, out, err) for code, out, err in json.loads(res.stdout)]


def cli_calls(
    python: str, calls: list[list[str]], prefix: tuple[str, ...] = ()
) -> list[subprocess.CompletedProcess[str]]:
    """run_many's results as CompletedProcess objects (args, returncode, stdout, stderr)."""
    got = run_many(calls, python, prefix)
    return [subprocess.CompletedProcess(c, code, o, err) for c, (code, o, err) in zip(calls, got)]


def member_py(code: str, *args: str) -> str:
    """Run Python code as msruser; its stdout (fails the test on a non-zero exit)."""
    r = as_member(sys.executable, "-c", code, *args)
    assert r.returncode == 0, r.stderr
    return str(r.stdout)


def read_on(dev: Device, msr: int, cpu: int = 0) -> int:
    """One MSR on one CPU, as root through the library."""
    return read_msrs(dev, [msr], cpu)[0]


def read_msrs(dev: Device, msrs: list[int], cpu: int) -> list[int]:
    """Several MSRs on one CPU in one batch; raises on any failed op."""
    b = Batch(len(msrs))
    for m in msrs:
        b.read(m, cpu)
    dev.submit(b)
    b.check()
    return [b.value(i) for i in range(len(msrs))]


def set_cpu_online(cpu: int, online: bool) -> None:
    Path(f"/sys/devices/system/cpu/cpu{cpu}/online").write_text("1" if online else "0")


__all__ = ["Batch", "Device", "abi", "ffi", "load_module", "raw_batch", "run_as", "unload_module"]


@pytest.fixture(scope="session")
def cprog(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Compile tests/guest/c/<name>.c against the shipped header (cached per
    session); m32: as a 32-bit program (gcc-multilib)."""
    built: dict[str, Path] = {}
    out = tmp_path_factory.mktemp("cprog")
    for d in (out, *out.parents):  # the unprivileged test users run these too
        if d == Path("/tmp"):
            break
        d.chmod(0o755)

    def build(name: str, m32: bool = False) -> Path:
        key = name + ("-m32" if m32 else "")
        if key not in built:
            exe = out / key
            subprocess.run(
                [
                    "cc",
                    *(["-m32"] if m32 else []),
                    "-O2",
                    "-Wall",
                    "-Werror",
                    "-pthread",
                    "-I",
                    str(REPO / "dkms"),
                    "-o",
                    str(exe),
                    str(REPO / "tests" / "guest" / "c" / f"{name}.c"),
                ],
                check=True,
            )
            built[key] = exe
        return built[key]

    return build


BATCH_AS = """
import errno, json, sys
from msrctl.device.msrdrv import Batch, Device, DeviceError
ops = json.loads(sys.argv[1])
try:
    dev = Device()
except DeviceError as e:
    print(json.dumps({"open": errno.errorcode[e.errno]})); sys.exit(0)
b = Batch(max(1, len(ops)))
for op, msr, value, cpu in ops:
    if op == "read":
        b.read(msr, cpu)
    else:
        b.write(msr, value, cpu)
dev.submit(b)
print(json.dumps({"errs": [errno.errorcode.get(b.err(i), "OK") for i in range(len(ops))],
                  "values": [b.value(i) for i in range(len(ops))]}))
"""


def batch_as(user: str, ops: list[tuple[str, int, int, int]]) -> dict[str, Any]:
    """Run one batch of (op, msr, value, cpu) as `user`; errors as errno names ('OK' for none)."""
    import json

    argv = [*privdrop(user), sys.executable, "-c", BATCH_AS, json.dumps(ops)]
    r = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def results_dir() -> Path:
    path = Path(os.environ.get("MSRDRV_RESULTS", "/tmp"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- evidence from the kernel itself: the msr tracepoints -----------------------

TRACEFS = Path("/sys/kernel/tracing")


class MsrTrace:
    """The kernel's msr:read_msr/write_msr tracepoints for some MSRs: every
    rdmsr/wrmsr the module issues for them, whoever asked, seen by the kernel."""

    def __init__(self, msrs: list[int]) -> None:
        if not (TRACEFS / "events").exists():
            subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
        self.filter = " || ".join(f"msr == {m:#x}" for m in msrs)

    def __enter__(self) -> MsrTrace:
        (TRACEFS / "tracing_on").write_text("0")
        (TRACEFS / "trace").write_text("")
        for ev in ("read_msr", "write_msr"):
            (TRACEFS / "events/msr" / ev / "filter").write_text(self.filter)
            (TRACEFS / "events/msr" / ev / "enable").write_text("1")
        (TRACEFS / "tracing_on").write_text("1")
        return self

    def mark(self, text: str) -> None:
        """A line in the trace, in order with the events around it."""
        (TRACEFS / "trace_marker").write_text(text)

    def events(self) -> list[tuple[str, int, int]]:
        """(read_msr|write_msr|MARK:text, msr, value) in the order they happened."""
        out: list[tuple[str, int, int]] = []
        for line in (TRACEFS / "trace").read_text().splitlines():
            if line.startswith("#"):
                continue
            for ev in ("read_msr: ", "write_msr: "):
                if ev in line:
                    msr, _, rest = line.split(ev, 1)[1].partition(", value ")
                    out.append((ev[:-2], int(msr, 16), int(rest.split()[0], 16)))
            if "tracing_mark_write: " in line:
                out.append(("MARK:" + line.split("tracing_mark_write: ", 1)[1].strip(), 0, 0))
        return out

    def __exit__(self, *exc: object) -> None:
        (TRACEFS / "tracing_on").write_text("0")
        for ev in ("read_msr", "write_msr"):
            (TRACEFS / "events/msr" / ev / "enable").write_text("0")
            (TRACEFS / "events/msr" / ev / "filter").write_text("0")


# --- memory with holes and read-only pages, for EFAULT paths ---------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


class Pages:
    """n anonymous pages at a known address; pages can be made read-only or unmapped."""

    def __init__(self, n: int) -> None:
        import ctypes
        import mmap

        self._ct = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mmap.restype = ctypes.c_void_p
        self.libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        self.libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        addr = self.libc.mmap(None, n * PAGE, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), "mmap failed"
        self.addr: int = addr
        self.n = n

    def page(self, i: int) -> int:
        return self.addr + i * PAGE

    def cast(self, ctype: str, addr: int) -> Any:
        return ffi.cast(ctype, addr)

    def read_only(self, i: int) -> None:
        import mmap

        assert self.libc.mprotect(self.page(i), PAGE, mmap.PROT_READ) == 0

    def unmap(self, i: int) -> None:
        assert self.libc.munmap(self.page(i), PAGE) == 0

    def close(self) -> None:
        self.libc.munmap(self.addr, self.n * PAGE)
