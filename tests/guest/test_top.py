"""`msrctl top` in a real terminal: tmux runs an interactive bash in a window, the test types
the command, reads the screen with capture-pane and presses keys with send-keys.  Under
QEMU TCG none of the metrics exists: the table must show '-' and the reasons, never 0.
Every way out (q, Ctrl-C, SIGTERM, the permission error) must leave the terminal as it
was: the normal screen, the cursor shown, the same stty modes.  Also the frames on a
pipe, and the view through the kernel's msr driver."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    MEMBER,
    REPO,
    Device,
    cpu_driver_in,
    cpu_driver_out,
    load_module,
    module_loaded,
    results_dir,
    unload_module,
)

from msrctl.admin import allowlist
from msrctl.telemetry import cpu, probe, table, topology

TMUX = "/usr/bin/tmux"
TOP = f"{sys.executable} -m msrctl top -i 200ms --all-columns"  # the layout tests need every column
STARTUP_S = 120.0  # python, cffi and the probe under TCG: 5-20 s, more while the host is busy
SAME_STTY = "SAME-STTY"


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", HOME=str(home))
    for var in ("MSRCTL_DEVICE", "MSRCTL_BACKEND", "TMUX"):
        env.pop(var, None)
    return env


class Pane:
    """One tmux window of its own server (the socket in a temporary directory) running an
    interactive bash, as a user at a terminal has."""

    def __init__(self, tmp: Path, width: int = 120, height: int = 40) -> None:
        self.sock, self.env = str(tmp / "tmux.sock"), _env(tmp)
        shell = "env 'PS1=$ ' bash --norc --noprofile"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), shell)
        try:
            self.wait(lambda lines: any(line.startswith("$") for line in lines), "the shell's prompt", 30)
            self.type(f"stty -g > {tmp}/stty.before")
        except BaseException:
            self.close()
            raise

    def tmux(self, *args: str) -> str:
        r = subprocess.run([TMUX, "-S", self.sock, *args], capture_output=True, text=True, env=self.env, check=True)
        return r.stdout

    def lines(self) -> list[str]:
        """The screen, wrapped lines joined (-J), trailing blanks dropped."""
        return [line.rstrip() for line in self.tmux("capture-pane", "-p", "-J", "-t", "t").splitlines()]

    def flag(self, name: str) -> str:
        return self.tmux("display-message", "-p", "-t", "t", f"#{{{name}}}").strip()

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)
        self.tmux("send-keys", "-t", "t", "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def wait(self, cond: Callable[[list[str]], object], what: str, timeout: float = STARTUP_S) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if cond(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n" + "\n".join(lines))
            time.sleep(0.2)

    def child(self) -> int:
        """The pid of the command the shell runs now (its one child)."""
        shell = int(self.flag("pane_pid"))
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == shell:  # the field after the state: the parent's pid
                kids.append(int(stat.parent.name))
        assert len(kids) == 1, kids
        return kids[0]

    def close(self) -> None:
        subprocess.run([TMUX, "-S", self.sock, "kill-server"], env=self.env, check=False, capture_output=True)


@pytest.fixture
def pane(tmp_path: Path, loaded: None, request: pytest.FixtureRequest) -> Iterator[Pane]:
    p = Pane(tmp_path)
    yield p
    (results_dir() / f"top-{request.node.name}.txt").write_text("\n".join(p.lines()) + "\n")  # the last screen
    p.close()


def _sample_no(lines: list[str]) -> int | None:
    m = next((m for line in lines if (m := re.search(r"(?:^|\| )sample (\d+) at ", line))), None)
    return int(m.group(1)) if m else None


def _rows(lines: list[str], title: str) -> list[list[str]]:
    """The cells of the rows under a table's title line."""
    i = lines.index(title)
    out = []
    for line in lines[i + 1 :]:
        if not line.strip():
            break
        out.append(line.split())
    return out


CPU_TITLE = table.title_line(table.CPU_COLUMNS)
PKG_TITLE = table.title_line(table.PACKAGE_COLUMNS)


def _table_up(lines: list[str]) -> bool:
    return CPU_TITLE in lines and _sample_no(lines) is not None and len(_rows(lines, CPU_TITLE)) > 0


def _check_restored(p: Pane, tmp: Path, code: int) -> list[str]:
    """The command has exited with code, the screen and the stty modes are the shell's again."""
    lines = p.wait(lambda ls: any(line.startswith("EXIT=") for line in ls), "the command's exit", 60)
    assert f"EXIT={code}" in lines, lines
    assert p.flag("alternate_on") == "0" and p.flag("cursor_flag") == "1"  # normal screen, cursor shown
    p.type(f"stty -g > {tmp}/stty.after; cmp -s {tmp}/stty.before {tmp}/stty.after && echo {SAME_STTY}")
    p.wait(lambda ls: SAME_STTY in ls, "the stty modes to be the same as before", 30)
    return lines


def test_live_table_refreshes_and_q_quits(pane: Pane, tmp_path: Path, cpus: list[int]) -> None:
    info = cpu.read()
    with Device(write=False) as dev:
        metrics = probe.run(dev, info, topology.read()).context.metrics
    pane.type(f"{TOP}; echo EXIT=$?")
    lines = pane.wait(_table_up, "the table")
    (results_dir() / "top-screen.txt").write_text("\n".join(lines) + "\n")
    assert pane.flag("alternate_on") == "1" and pane.flag("cursor_flag") == "0"
    host = os.uname().nodename
    assert lines[0] == f"msrctl top | {host} | backend msrdrv | {info.model_name}", lines
    state = r"sample \d+ at [0-9.]+ s \| every 200 ms \| late \d+ \| missed \d+ \| q or Ctrl-C quits"
    assert re.fullmatch(state, lines[1]), lines[1]
    assert lines[2].startswith("virtual machine: any value shown is the hypervisor's emulation")  # QEMU: flagged
    # one row per package and per online CPU, every metric '-': QEMU implements none (never a 0)
    packages = _rows(lines, PKG_TITLE)
    assert [r[0] for r in packages] == [str(p.package) for p in topology.read().packages()]
    assert all(cell == "-" for r in packages for cell in r[1:]), packages
    rows = pane.wait(lambda ls: len(_rows(ls, CPU_TITLE)) == len(cpus), "a row per CPU", 10)
    cpu_rows = _rows(rows, CPU_TITLE)
    assert [r[0] for r in cpu_rows] == [str(c) for c in cpus]
    assert all(cell == "-" for r in cpu_rows for cell in r[2:]), cpu_rows  # after CPU and CORE
    # the reasons, once each, below the tables: the probe's own words
    text = " ".join(" ".join(lines).split())
    assert "'-' = absent on this machine:" in lines
    for col in (*table.PACKAGE_COLUMNS, *table.CPU_COLUMNS):
        why = metrics[col.key] if col.key in metrics else None
        if why is not None:
            assert text.count(why) == 1, (col.title, why)
    # it refreshes: the sample number moves on
    first = _sample_no(lines)
    assert first is not None
    pane.wait(lambda ls: (_sample_no(ls) or 0) > first, "the next refresh", 30)
    pane.keys("q")
    after = _check_restored(pane, tmp_path, 0)
    assert not any("Traceback" in line or "error" in line for line in after), after


def test_ctrl_c_quits_cleanly(pane: Pane, tmp_path: Path) -> None:
    pane.type(f"{TOP}; echo EXIT=$?")
    pane.wait(_table_up, "the table")
    pane.keys("C-c")
    after = _check_restored(pane, tmp_path, 0)
    assert not any("Traceback" in line or "interrupted" in line for line in after), after


def test_resize_redraws_to_the_new_size_and_sigterm_quits(pane: Pane, tmp_path: Path) -> None:
    pane.type(f"{TOP}; echo EXIT=$?")
    lines = pane.wait(_table_up, "the table")
    assert PKG_TITLE in lines and "PC10%" in PKG_TITLE  # 120 columns: every column
    pane.resize(60, 40)
    narrow_pkg = table.title_line(table.fit(table.PACKAGE_COLUMNS, 60) or [])
    narrow_cpu = table.title_line(table.fit(table.CPU_COLUMNS, 60) or [])
    lines = pane.wait(lambda ls: narrow_pkg in ls and narrow_cpu in ls, "the table redrawn 60 wide", 30)
    assert PKG_TITLE not in lines and CPU_TITLE not in lines
    assert any(line.startswith("hidden, the window is too narrow: PC8%, PC9%, PC10%") for line in lines), lines
    assert all(len(line) <= 60 for line in lines)
    pane.resize(30, 10)
    lines = pane.wait(lambda ls: any("too small" in line for line in ls), "the too-small notice", 30)
    info = cpu.read()
    header = table.Header(os.uname().nodename, info.model_name, "msrdrv", 200_000_000, True, "q or Ctrl-C quits")
    notice = table.render(header, {}, None, None, 30, 10, all_columns=True)
    assert " ".join(notice).startswith("msrctl top: the window is 30x10, too small")
    assert [line for line in lines if line] == notice  # in place of the table, not garbled by it
    pane.resize(120, 40)
    pane.wait(lambda ls: PKG_TITLE in ls, "the full table again", 30)
    os.kill(pane.child(), signal.SIGTERM)
    _check_restored(pane, tmp_path, 0)


@pytest.fixture
def no_list(dev: Device) -> Iterator[Device]:
    allowlist.clear(dev.fd)
    yield dev
    allowlist.clear(dev.fd)


def test_member_without_an_allowlist_one_line_exit_3(no_list: Device, pane: Pane, tmp_path: Path) -> None:
    pane.type(f"{shlex.join(MEMBER)} {TOP}; echo EXIT=$?")
    lines = _check_restored(pane, tmp_path, 3)
    errors = [line for line in lines if line.startswith("msrctl:")]
    assert errors == [
        "msrctl: error: cannot read telemetry registers: no msrdrv allowlist is loaded, so members of group msr "
        "may read no MSR; ask an admin to run: sudo msrctl allowlist load --profile telemetry"
    ]


def _top(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    env.pop("MSRCTL_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "msrctl", *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )


def _frames(out: str) -> list[list[str]]:
    """The frames of top's output on a pipe: a blank line before each header."""
    return [frame.splitlines() for frame in re.split(r"\n\n(?=msrctl top \| )", out)]


def test_frames_on_a_pipe_and_through_the_msr_driver(loaded: None, cpus: list[int]) -> None:
    r = _top("top", "-i", "100ms", "-n", "2")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    frames = _frames(r.stdout)
    assert len(frames) == 2 and "\x1b" not in r.stdout
    # by default a column only for what the machine has: under QEMU the ids alone, and each
    # metric's column named below the tables with its reason
    ids_only = " CPU  CORE"
    for frame in frames:
        assert re.search(r"sample \d+ at [0-9.]+ s \| every 100 ms \| late \d+ \| missed \d+$", frame[1])
        assert [r[0] for r in _rows(frame, ids_only)] == [str(c) for c in cpus], frame
        assert "absent on this machine:" in frame and "'-' = absent on this machine:" not in frame
        text = " ".join(" ".join(frame).split())
        assert all(f"{col.name}," in text or f"{col.name}:" in text for col in table.CPU_COLUMNS[2:]), text
    unload_module()
    loaded_here = False
    try:
        loaded_here = cpu_driver_in("msr")
        r = _top("--backend", "msr", "top", "-n", "1", "-i", "100ms", "--all-columns")
        assert r.returncode == 0, r.stderr
        frame = r.stdout.splitlines()
        assert frame[0].endswith(f"| backend msr (the kernel's msr driver) | {cpu.read().model_name}"), frame
        rows = _rows(frame, CPU_TITLE)
        assert [r[0] for r in rows] == [str(c) for c in cpus] and all(c == "-" for r in rows for c in r[2:])
    finally:
        cpu_driver_out("msr", loaded_here)
        if not module_loaded():
            load_module()
