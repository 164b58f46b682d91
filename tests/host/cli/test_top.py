"""`msrctl top` without a device: the frame a derived sample gives (exact lines, '-' and the
reasons for absent metrics, narrow and short windows, a window too small), the terminal
it draws on (a real pseudo-terminal: modes taken and given back on every way out, q,
resize and quit signals), the batch fallback, and the command's one-line errors."""

from __future__ import annotations

import errno
import os
import pty
import signal
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakecpu import QEMU, SMALL, STATIC, STEP, XEON, write_sysfs
from fakecpu import plan as _plan

from msrctl import errors
from msrctl.cli import terminal
from msrctl.telemetry import probe, table
from msrctl.telemetry.derive import Sample, derive
from msrctl.telemetry.plan import Plan, Raw

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_sysfs(tmp_path, SMALL, monkeypatch)


HEADER = table.Header("box", "Xeon Gold 6130", "msrdrv", 100_000_000, False, "q quits")
STATUS = table.Status(7, 0.7, 0, 1)


def _sample(plan: Plan, errs: dict[int, int] | None = None) -> Sample:
    """derive() over 0.1 s between two snapshots of the plan, the counters moved by STEP."""
    start = tuple(STATIC.get(op.msr, 1000) for op in plan.ops)  # thermal status as STATIC has it
    a = Raw(start, (0,) * len(plan), 10**9, 10**9, 10**9)
    values = tuple(v + STEP.get(op.msr, 0) for v, op in zip(start, plan.ops))
    e = tuple((errs or {}).get(i, 0) for i in range(len(plan)))
    return derive(plan, a, Raw(values, e, 11 * 10**8, 11 * 10**8, 11 * 10**8))


XEON_TABLES = [
    "",
    "PKG    PKG W   DRAM W  TEMP C   PC2%   PC3%   PC6%   PC7%   PC8%   PC9%  PC10%",
    "  0    30.00     2.51      60   10.0    0.0    5.0    0.0    0.0    0.0    0.0",
    "",
    " CPU  CORE     MHz   BUSY%  BUSY MHz    C3%    C6%    C7%  TEMP C",
    "   0     0    1800    50.0      3600    0.0   25.0    0.0      58",
    "   1     1    1800    50.0      3600    0.0   25.0    0.0      58",
    "   2     0    1800    50.0      3600    0.0   25.0    0.0      58",
    "   3     1    1800    50.0      3600    0.0   25.0    0.0      58",
]


def test_frame_of_a_derived_sample(sysfs: Path) -> None:
    plan = _plan(XEON)
    lines = table.render(HEADER, plan.context.metrics, _sample(plan), STATUS, 120, 40)
    assert lines == [
        "msrctl top | box | backend msrdrv | Xeon Gold 6130",
        "sample 7 at 0.7 s | every 100 ms | late 0 | missed 1 | q quits",
        *XEON_TABLES,
    ]  # everything this Xeon has is present: no '-', no notes
    # no limits (stdout not a terminal): the same frame
    assert table.render(HEADER, plan.context.metrics, _sample(plan), STATUS) == lines


def test_narrow_window_drops_optional_columns_and_says_so(sysfs: Path) -> None:
    plan = _plan(XEON)
    lines = table.render(HEADER, plan.context.metrics, _sample(plan), STATUS, 60, 40)
    assert lines == [
        "msrctl top | box | backend msrdrv | Xeon Gold 6130",
        "sample 7 at 0.7 s | every 100 ms | late 0 | missed 1",
        "q quits",
        "",
        "PKG    PKG W   DRAM W  TEMP C   PC2%   PC3%   PC6%   PC7%",
        "  0    30.00     2.51      60   10.0    0.0    5.0    0.0",
        "",
        " CPU  CORE     MHz   BUSY%    C3%    C6%    C7%  TEMP C",
        "   0     0    1800    50.0    0.0   25.0    0.0      58",
        "   1     1    1800    50.0    0.0   25.0    0.0      58",
        "   2     0    1800    50.0    0.0   25.0    0.0      58",
        "   3     1    1800    50.0    0.0   25.0    0.0      58",
        "",
        "hidden, the window is too narrow: PC8%, PC9%, PC10%,",
        "  BUSY MHz",  # a column's name is not split across lines
    ]
    assert table.min_width() == 49  # CPU, MHz, BUSY%, C3-C7%, TEMP C
    narrowest = table.render(HEADER, plan.context.metrics, _sample(plan), STATUS, 49, 40)
    assert " CPU     MHz   BUSY%    C3%    C6%    C7%  TEMP C" in narrowest
    assert "PKG    PKG W   DRAM W  TEMP C   PC2%   PC3%" in narrowest


def test_under_qemu_every_value_is_a_dash_with_its_reason(sysfs: Path) -> None:
    plan = _plan(QEMU, value=0)
    assert plan.registers == ()  # nothing is read but the TSC: no 0 can turn into a value
    header = table.Header("vm", QEMU.model_name, "msrdrv", 200_000_000, True, "q quits")
    head = [
        "msrctl top | vm | backend msrdrv | QEMU Virtual CPU version 2.5+",
        "sample 7 at 0.7 s | every 200 ms | late 0 | missed 1 | q quits",
        "virtual machine: any value shown is the hypervisor's emulation of the MSR, not hardware's",
        "",
    ]
    reasons = [
        "  PKG W: the CPU lacks RAPL (no 'rapl' flag in /proc/cpuinfo)",
        "  DRAM W: AMD RAPL has only core and package energy counters",
        "  package TEMP C: no k10temp hwmon device (AMD keeps its temperature in the SMN, not in an MSR): load the "
        "driver with",
        "    `sudo modprobe k10temp`",
        "  PC2%, PC3%, PC6%, PC7%, PC8%, PC9%, PC10%, C3%, C6%, C7%: AMD CPUs have no C-state residency MSRs",
        "  MHz, BUSY%, BUSY MHz: the CPU lacks APERF/MPERF (no 'aperfmperf' flag in /proc/cpuinfo)",
        "  core TEMP C: AMD CPUs have no per-core temperature sensor (k10temp's per-package value is pkg_temp_c)",
    ]
    cpus = [f"{c:>4}  {c % 2:>4}" for c in range(4)]
    # by default only what the machine has: here the ids alone, every metric named below with its reason
    lines = table.render(header, plan.context.metrics, _sample(plan), STATUS, 120, 40)
    assert lines == [*head, "PKG", "  0", "", " CPU  CORE", *cpus, "", "absent on this machine:", *reasons]
    # --all-columns: every column, '-' under each (never a 0)
    lines = table.render(header, plan.context.metrics, _sample(plan), STATUS, 120, 40, all_columns=True)
    assert lines == [
        *head,
        "PKG    PKG W   DRAM W  TEMP C   PC2%   PC3%   PC6%   PC7%   PC8%   PC9%  PC10%",
        "  0        -        -       -      -      -      -      -      -      -      -",
        "",
        " CPU  CORE     MHz   BUSY%  BUSY MHz    C3%    C6%    C7%  TEMP C",
        *[f"{row}       -       -         -      -      -      -       -" for row in cpus],
        "",
        "'-' = absent on this machine:",
        *reasons,
    ]


def test_a_present_metric_without_a_value_and_a_failed_read(sysfs: Path) -> None:
    plan = _plan(XEON)
    i = plan.index(0, 0x611)
    assert i is not None
    sample = _sample(plan, {i: errno.EACCES})
    lines = table.render(HEADER, plan.context.metrics, sample, STATUS)
    assert lines[4] == "  0        -     2.51      60   10.0    0.0    5.0    0.0    0.0    0.0    0.0"
    assert lines[-2:] == [
        "'-' under PKG W: no value this interval (a CPU never busy, an invalid reading or a failed read)",
        "1 read failed this interval; the first: MSR 0x611 on CPU 0: Permission denied",
    ]


def test_first_frame_before_any_interval(sysfs: Path) -> None:
    plan = _plan(XEON)
    assert table.render(HEADER, plan.context.metrics, None, None, 80, 24) == [
        "msrctl top | box | backend msrdrv | Xeon Gold 6130",
        "every 100 ms | q quits",
        "",
        "measuring: the first values come after one interval (100 ms)",
    ]


def test_short_window_keeps_cpu_rows_and_shortens_the_rest(sysfs: Path) -> None:
    plan = _plan(QEMU, value=0)
    header = table.Header("vm", QEMU.model_name, "msrdrv", 200_000_000, False, "q quits")
    full = table.render(header, plan.context.metrics, _sample(plan), STATUS, 120, 40)
    short = table.render(header, plan.context.metrics, _sample(plan), STATUS, 120, 14)
    assert short == [*full[:11], "", "'-' = absent: enlarge the window to see why"]
    shorter = table.render(header, plan.context.metrics, _sample(plan), STATUS, 120, 9)
    assert shorter[-3:] == [full[6], full[7], "+3 more CPUs: enlarge the window, or choose CPUs with -p"]
    assert table.min_height(header, 120) == 8


@pytest.mark.parametrize(("width", "height"), [(48, 40), (120, 7), (10, 3), (1, 1)])
def test_too_small_says_so(sysfs: Path, width: int, height: int) -> None:
    plan = _plan(XEON)
    lines = table.render(HEADER, plan.context.metrics, _sample(plan), STATUS, width, height)
    assert " ".join(lines).startswith("msrctl top: the window is"[: max(1, width)])
    if width >= 40:  # the header wraps into more lines at the narrowest width
        need_h = 10 if width < 49 else 8
        assert " ".join(lines) == (
            f"msrctl top: the window is {width}x{height}, too small for the table; "
            f"it needs at least 49x{need_h}: enlarge it, or press q to quit"
        )


def test_no_frame_exceeds_its_window(sysfs: Path) -> None:
    for info, value in ((XEON, None), (QEMU, 0)):
        plan = _plan(info, value)
        sample = _sample(plan)
        for width in range(1, 140, 3):
            for height in range(1, 45, 4):
                lines = table.render(HEADER, plan.context.metrics, sample, STATUS, width, height)
                assert len(lines) <= height and all(len(line) <= width for line in lines), (width, height, lines)


# --- the terminal ------------------------------------------------------------------


@pytest.fixture
def tty() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal pair (controller, terminal) of 100x30, in the line discipline's default mode."""
    ctl, term = pty.openpty()
    os.set_blocking(ctl, False)
    import fcntl
    import struct

    fcntl.ioctl(term, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    yield ctl, term
    os.close(ctl)
    os.close(term)


def _drain(fd: int) -> bytes:
    out = b""
    try:
        while chunk := os.read(fd, 65536):
            out += chunk
    except BlockingIOError:
        pass
    return out


def test_screen_takes_the_terminal_and_gives_it_back_on_an_exception(tty: tuple[int, int]) -> None:
    ctl, term = tty
    before = termios.tcgetattr(term)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGWINCH, signal.SIGTSTP)}
    with pytest.raises(RuntimeError, match="boom"):
        with terminal.Screen(term, term) as screen:
            mode = termios.tcgetattr(term)
            assert not mode[3] & (termios.ICANON | termios.ECHO) and mode[3] & termios.ISIG  # Ctrl-C stays SIGINT
            assert screen.size() == (100, 30)
            screen.draw(["one", "two"])
            raise RuntimeError("boom")
    assert termios.tcgetattr(term) == before
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    out = _drain(ctl).decode()
    assert out.startswith(terminal.ENTER) and out.endswith(terminal.LEAVE)
    frame = out[len(terminal.ENTER) : -len(terminal.LEAVE)]
    rows = [f"\x1b[{y + 1};1H\x1b[2K" + t for y, t in enumerate(["one", "two", *[""] * 28])]
    assert frame == "".join(rows)  # every row erased and written; no newline to scroll the screen


def test_screen_keys_resize_and_quit_signals(tty: tuple[int, int]) -> None:
    ctl, term = tty
    with terminal.Screen(term, term) as screen:
        screen.wait(0)
        assert not screen.quit and not screen.resized
        os.write(ctl, b"x")
        screen.wait(5)  # returns on the key, long before 5 s
        assert not screen.quit
        os.kill(os.getpid(), signal.SIGWINCH)
        screen.wait(5)
        assert screen.resized and not screen.quit
        os.write(ctl, b"q")
        screen.wait(5)
        assert screen.quit
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with terminal.Screen(term, term) as screen:
            os.kill(os.getpid(), s)
            screen.wait(5)
            assert screen.quit, s


def test_frames_for_a_pipe(tmp_path: Path) -> None:
    path = tmp_path / "out"
    with path.open("w") as out, terminal.Frames(out) as frames:
        assert frames.size() == (None, None) and not frames.interactive
        frames.draw(["a", "b"])
        frames.draw(["c"])
        os.kill(os.getpid(), signal.SIGTERM)
        frames.wait(5)
        assert frames.quit
    assert path.read_text() == "a\nb\n\nc\n"


# --- the command -------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    root = tmp_path / "root"
    e.update(PYTHONPATH=str(ROOT), MSRCTL_DEVICE=str(root / "dev/msrdrv"), MSRCTL_SYSROOT=str(root))
    e.pop("MSRCTL_DEBUG", None)
    (root / "proc").mkdir(parents=True)
    (root / "proc/modules").write_text("")
    return e


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-i", "10q"], errors.USAGE, "malformed interval '10q': expected a number and a unit"),
        (["-i", "0.1ms"], errors.USAGE, "interval '0.1ms' is too short"),
        (["-n", "0"], errors.USAGE, "msrctl top: Invalid value for '-n'"),
        (["-p", "4096"], errors.NO_CPU, "CPU 4096"),
        ([], errors.NOT_LOADED, "msrdrv module not loaded"),
    ],
)
def test_errors_are_one_line(env: dict[str, str], args: list[str], code: int, message: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "msrctl", "top", *args], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == code, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("msrctl: error: ") and message in lines[0], res.stderr
    assert res.stdout == ""


def test_an_error_in_a_terminal_leaves_it_as_it_was(env: dict[str, str], tty: tuple[int, int]) -> None:
    ctl, term = tty
    before = termios.tcgetattr(term)
    res = subprocess.run([sys.executable, "-m", "msrctl", "top"], stdin=term, stdout=term, stderr=term, env=env)
    assert res.returncode == errors.NOT_LOADED
    out = _drain(ctl).decode()
    assert "msrctl: error: cannot open" in out and "\x1b" not in out  # the screen was never taken
    assert termios.tcgetattr(term) == before


def test_device_info_only_from_msrdrv() -> None:
    class Stock:
        backend = "msr"

        def info(self) -> None:
            raise AssertionError("the kernel's msr driver has no INFO: never asked")

    class Bare:
        def submit(self, batch: object) -> int:
            return 0

    assert probe.device_info(Stock()) is None and probe.device_info(Bare()) is None
