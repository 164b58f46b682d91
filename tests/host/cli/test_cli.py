"""The CLI without a device: messages, exit codes, laziness, on whichever Python runs the tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from msrctl import errors

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No device, and an empty sysroot: msrdrv is not loaded, the kernel has no modules."""
    e = dict(os.environ)
    # the sysroot's /dev/msrdrv counts as the default node
    dev = tmp_path / "root/dev/msrdrv"
    e.update(PYTHONPATH=str(ROOT), MSRCTL_DEVICE=str(dev), MSRCTL_SYSROOT=str(tmp_path / "root"))
    e.pop("MSRCTL_DEBUG", None)
    return e


def msrctl(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msrctl", *args], input=stdin, capture_output=True, text=True, env=env, check=False
    )


def one_error(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("msrctl: error: ")
    assert "Traceback" not in res.stderr
    return lines[0][len("msrctl: error: ") :]


def test_device_missing(env: dict[str, str]) -> None:
    proc = Path(env["MSRCTL_SYSROOT"]) / "proc"
    proc.mkdir(parents=True)
    (proc / "modules").write_text("")  # modules can load; msrdrv is not loaded
    res = msrctl(env, "read", "0x1b")
    assert res.returncode == errors.NOT_LOADED == 5
    assert one_error(res) == (
        f"cannot open {env['MSRCTL_DEVICE']}: msrdrv module not loaded; run `msrctl load` (as root), "
        "or `modprobe msr` (as root) to use the kernel's msr driver instead"
    )
    for args in (["write", "tsc_aux", "1"], ["rdtsc", "-a"], ["read", "-a", "--json", "tsc"]):
        res = msrctl(env, *args)
        assert res.returncode == 5 and "msrdrv module not loaded" in one_error(res)
    res = msrctl(env, "batch", stdin="read 0x10\n")
    assert res.returncode == 5


def test_device_option(env: dict[str, str], tmp_path: Path) -> None:
    res = msrctl(env, "--device", str(tmp_path / "other"), "read", "0x10")
    assert res.returncode == 5
    assert one_error(res) == (
        f"cannot open {tmp_path / 'other'}: no such file (and msrdrv is not loaded); check the path given with "
        "--device or MSRCTL_DEVICE (msrdrv's node is /dev/msrdrv); load msrdrv with `msrctl load` (as root)"
    )
    fake_module(Path(env["MSRCTL_SYSROOT"]), 0)
    res = msrctl(env, "--device", "/nonexistent", "read", "0x10")
    assert one_error(res) == (
        "cannot open /nonexistent: no such file; check the path given with --device or MSRCTL_DEVICE "
        "(msrdrv's node is /dev/msrdrv)"
    )


def test_without_module_support_read_does_not_advise_loading(env: dict[str, str]) -> None:
    res = msrctl(env, "read", "0x10")  # the empty sysroot has no /proc/modules
    assert res.returncode == 5
    assert one_error(res) == (
        f"cannot open {env['MSRCTL_DEVICE']}: msrdrv is not loaded, and this kernel cannot load modules "
        "(no /proc/modules); boot a kernel built with module support (CONFIG_MODULES=y), such as Debian's "
        "linux-image-amd64"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["read", "APIC_BAS"],
            "unknown register 'APIC_BAS': not in the bundled register table; did you mean IA32_APIC_BASE?",
        ),
        (["read", "0x1g"], "malformed MSR '0x1g': not a number; write it as hex (0x1f or 1fh)"),
        (["write", "0x10", "0x10000000000000000"], "value 0x10000000000000000 is too large: it needs 65 bits"),
        (["write", "0x10", "zz"], "malformed value 'zz': not a number"),
        (["write", "0x10", "1", "--mask", "0x1g"], "malformed mask '0x1g'"),
        (["read", "-p", "1-", "0x10"], "malformed CPU list '1-'"),
        (["read", "-a", "-p", "1", "0x10"], "-a and -p conflict"),
        (["read", "-f", "9:10", "0x10"], "malformed bitfield '9:10'"),
        (["read", "--bogus", "0x10"], "msrctl read: No such option: --bogus; see `msrctl read --help`"),
        (["read"], "msrctl read: Missing argument 'MSR'"),
        (["nosuch"], "msrctl: No such command 'nosuch'"),
        (["load", "--max-ops", "0"], "msrctl load: Invalid value for '--max-ops'"),
        (["registers", "--vendor", "via"], "msrctl registers: Invalid value for '--vendor'"),
        (["registers", "nosuchreg"], "no register matches 'nosuchreg'"),
        (["batch", "/nonexistent/ops.txt"], "cannot read /nonexistent/ops.txt: No such file or directory"),
        (["generate", "udev-rule", "--mode", "66"], "malformed mode '66'"),
        (["generate", "udev-rule", "--group", 'a"b'], "malformed group name 'a\"b': a group name is 1-32"),
        (["generate", "udev-rule", "--group", ""], "malformed group name ''"),
        (["generate", "udev-rule", "--group", "x", "--max-ops", "5"], "--max-ops does not apply to udev-rule"),
        (["generate", "modprobe", "--group", "msr", "--mode", "0640"], "--group, --mode do not apply to modprobe"),
        (["stat", "-p", "-1", "--", "true"], "msrctl stat: Invalid value for '-p'"),
        (["read", "--json", "-d", "0x10"], "-d does not apply with --json"),
        (["read", "--json", "-c", "-0", "0x10"], "-c, -0 do not apply with --json"),
    ],
)
def test_usage_errors(env: dict[str, str], args: list[str], message: str) -> None:
    res = msrctl(env, *args)
    assert res.returncode == errors.USAGE == 64
    assert one_error(res).startswith(message)
    assert res.stdout == ""


def test_allowlist_refuses_protected_msrs_before_the_device(env: dict[str, str], tmp_path: Path) -> None:
    site = tmp_path / "allowlist.txt"
    site.write_text("0x10 0x0\n# syscall entry\nIA32_LSTAR 0x0\n")
    res = msrctl(env, "allowlist", "load", str(site), "--profile", "telemetry")
    assert res.returncode == errors.USAGE
    assert one_error(res) == (
        f"{site}:3: MSR 0xc0000082 (IA32_LSTAR) holds kernel addresses (STAR, LSTAR, CSTAR): "
        "msrdrv never lets group members read or write it; remove the line (root reaches it without a list)"
    )
    res = msrctl(env, "allowlist", "load", "-", stdin="0xc0000100 0x0\n")
    assert res.returncode == 64 and one_error(res).startswith("<stdin>:1: MSR 0xc0000100 (IA32_FS_BASE) holds")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["allowlist", "load"], "nothing to load: give a file, - for stdin, or --profile NAME; "),
        (["allowlist", "load", "--profile", "bogus"], "unknown allowlist profile 'bogus': the profiles are energy,"),
        (["allowlist", "render"], "no profile given: the profiles are energy, perfmon, power-capping, telemetry"),
        (["allowlist", "render", "telemetry", "--vendor", "via"], "unknown vendor 'via'"),
    ],
)
def test_allowlist_usage_errors(env: dict[str, str], args: list[str], message: str) -> None:
    res = msrctl(env, *args)
    assert res.returncode == errors.USAGE
    assert one_error(res).startswith(message)


def test_allowlist_render_merges_profiles(env: dict[str, str]) -> None:
    res = msrctl(env, "allowlist", "render", "--profile", "telemetry", "--profile", "energy", "--vendor", "intel")
    assert res.returncode == 0, res.stderr
    msrs = [line.split()[0] for line in res.stdout.splitlines() if not line.startswith("#")]
    assert len(msrs) == len(set(msrs)) and {"0x00000606", "0x00000611", "0x00000010"} <= set(msrs)
    single = msrctl(env, "allowlist", "render", "telemetry")
    assert single.stdout.startswith('# msrdrv allowlist profile "telemetry"')
    assert "0x00000611" not in single.stdout
    assert msrctl(env, "allowlist", "profiles").stdout.split() == ["energy", "perfmon", "power-capping", "telemetry"]


def test_batch_errors_name_the_line(env: dict[str, str], tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_text("read 0x10\n# fine\nread APIC_BAS cpu 0\n")
    res = msrctl(env, "batch", str(ops))
    assert res.returncode == 64
    assert one_error(res).startswith(f"{ops}:3: unknown register 'APIC_BAS'")
    res = msrctl(env, "batch", stdin='[{"op": "read", "msr": "0x10"}, {"op": "write", "msr": "0x10"}]')
    assert one_error(res).startswith('<stdin>: op 2: write needs "value"')
    res = msrctl(env, "batch", stdin="# nothing\n")
    assert one_error(res).startswith("<stdin>: no ops")


def test_load_unload_without_module_support(env: dict[str, str]) -> None:
    res = msrctl(env, "load")
    assert res.returncode == errors.MODULE == 6
    assert "this kernel has no loadable module support (/proc/modules is missing)" in one_error(res)
    res = msrctl(env, "unload")
    assert res.returncode == 0 and res.stdout == "msrdrv is not loaded\n"


def fake_module(root: Path, refcnt: int) -> None:
    mod = root / "sys/module/msrdrv"
    (mod / "parameters").mkdir(parents=True)
    (mod / "initstate").write_text("live\n")
    (mod / "version").write_text("0.1.0\n")
    (mod / "refcnt").write_text(f"{refcnt}\n")
    (mod / "parameters/max_ops").write_text("4096\n")
    (root / "proc").mkdir()
    (root / "proc/modules").write_text("msrdrv 16384 0 - Live 0x0\n")


def test_unload_refuses_in_use(env: dict[str, str]) -> None:
    fake_module(Path(env["MSRCTL_SYSROOT"]), 1)
    res = msrctl(env, "unload")
    assert res.returncode == 6
    assert one_error(res) == (
        "cannot unload msrdrv: it is in use (1 open handle(s) of /dev/msrdrv); "
        "close the programs using it (see: fuser -v /dev/msrdrv) and try again"
    )


def test_loaded_but_node_missing(env: dict[str, str]) -> None:
    fake_module(Path(env["MSRCTL_SYSROOT"]), 0)
    res = msrctl(env, "read", "0x10")
    assert res.returncode == 5 and "no such device node although msrdrv is loaded" in one_error(res)
    res = msrctl(env, "load", "--timeout", "0")
    assert res.returncode == 5 and "did not appear within 0 s" in one_error(res)


def test_status_without_module(env: dict[str, str]) -> None:
    res = msrctl(env, "status", "--json")
    assert res.returncode == errors.NOT_LOADED == 5  # as the README says, whether or not modules can load
    rep = json.loads(res.stdout)
    assert rep["ok"] is False
    assert rep["module"]["loaded"] is False
    assert rep["device"]["exists"] is False
    problem = "msrdrv module not loaded, and this kernel cannot load modules (no /proc/modules)"
    assert rep["problems"][0]["problem"] == problem
    text = msrctl(env, "status")
    assert text.returncode == 5
    assert f"problem:   {problem}" in text.stdout
    assert f"device:    {env['MSRCTL_DEVICE']} missing" in text.stdout
    fake_module(Path(env["MSRCTL_SYSROOT"]), 0)
    rep = json.loads(msrctl(env, "status", "--json").stdout)
    assert rep["module"]["loaded"] is True and rep["module"]["version"] == "0.1.0"
    assert rep["problems"][0]["problem"].endswith("does not exist although msrdrv is loaded")


def test_help_and_version(env: dict[str, str]) -> None:
    res = msrctl(env, "--help")
    assert res.returncode == 0
    assert "Exit status: 0 success; 1 other failure; 2 no such CPU" in " ".join(res.stdout.split())
    assert msrctl(env).returncode == 0  # no arguments: help
    res = msrctl(env, "--version")
    assert res.returncode == 0 and res.stdout.startswith("msrctl 0.")
    for cmd in ("read", "write", "rdtsc", "batch", "registers", "status", "load", "unload", "generate"):
        assert msrctl(env, cmd, "--help").returncode == 0


def test_registers(env: dict[str, str]) -> None:
    res = msrctl(env, "registers", "apic_base")
    assert res.returncode == 0
    assert res.stdout.splitlines() == [
        "0x0000001b  IA32_APIC_BASE               both   Local APIC base address and enables",
        "            fields: BSP 8, EXTD 10, EN 11, BASE 51:12",
    ]
    data = json.loads(msrctl(env, "registers", "--vendor", "amd", "--json").stdout)
    assert {r["vendor"] for r in data} == {"amd", "both"}


def test_generate(env: dict[str, str], tmp_path: Path) -> None:
    res = msrctl(env, "generate", "modprobe", "--max-ops", "100", "--no-allow-writes")
    assert "options msrdrv max_ops=100 allow_writes=0\n" in res.stdout
    res = msrctl(env, "generate", "modprobe", "--max-ops-user", "64", "--section-ops", "16")
    assert "options msrdrv max_ops_user=64 section_ops=16\n" in res.stdout
    out = tmp_path / "rule"
    assert msrctl(env, "generate", "udev-rule", "--group", "wheel", "-o", str(out)).returncode == 0
    assert 'GROUP="wheel", MODE="0660"' in out.read_text()


def test_python_m_msrctl_cli(env: dict[str, str]) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "msrctl.cli.main", "--version"], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == 0 and res.stdout.startswith("msrctl ")


LAZY = """
import sys
from msrctl.cli import main as cli
code = cli.main(sys.argv[1:])
print(code, ",".join(sorted(sys.modules)), file=sys.stderr)
"""
NEVER = {"jinja2", "msrctl.admin.render", "msrctl.admin.status", "msrctl.admin.modtool", "msrctl.cli.batchfile"}
DEVICE = {"_cffi_backend", "cffi", "msrctl.device.abi", "msrctl.device.msrdrv"}
# The command modules a `read` never needs (the root group builds only the command that runs).
OTHER_COMMANDS = {f"msrctl.cli.{m}" for m in ("allowlist", "decode", "exporter", "power", "record", "stat", "top")}


@pytest.mark.parametrize(
    ("args", "device", "table"),
    [
        (["--help"], False, False),
        (["read", "--help"], False, False),
        (["registers"], False, True),
        (["read", "0x10"], True, False),
        (["read", "-x", "-f", "3:0", "-p", "0", "16"], True, False),
        (["read", "tsc"], True, True),
        (["read", "0x1g"], False, False),
    ],
)
def test_lazy_imports(env: dict[str, str], args: list[str], device: bool, table: bool) -> None:
    """Start-up loads only what the command needs: no jinja2, cffi only for the device, the table for names."""
    res = subprocess.run([sys.executable, "-c", LAZY, *args], capture_output=True, text=True, env=env, check=False)
    loaded = set(res.stderr.splitlines()[-1].split(" ", 1)[1].split(","))
    assert not loaded & NEVER
    assert bool(loaded & DEVICE) == device, loaded & DEVICE
    assert "msrctl.device.msrdrv" in loaded if device else True
    assert ("msrctl.registers.table" in loaded) == table
    if args != ["--help"]:  # the root's help lists every command, so it builds them all
        assert not loaded & OTHER_COMMANDS, loaded & OTHER_COMMANDS


def test_a_full_disk_is_one_line_not_an_internal_error(env: dict[str, str]) -> None:
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            [sys.executable, "-m", "msrctl", "registers"], stdout=full, stderr=subprocess.PIPE, text=True, env=env
        )
    assert res.returncode == errors.FAILURE
    assert res.stderr == (
        "msrctl: error: cannot write the output: No space left on device; free space, or send the output elsewhere\n"
    )


def test_batch_input_with_a_bom_and_typos_in_keys(env: dict[str, str], tmp_path: Path) -> None:
    ops = tmp_path / "ops.txt"
    ops.write_bytes(b"\xef\xbb\xbfread 0x10 cpu 0 cpu 1\n")
    res = msrctl(env, "batch", str(ops))
    assert res.returncode == errors.USAGE
    assert one_error(res).startswith(f"{ops}:1: 'cpu' given twice")  # the BOM did not hide the op
    res = msrctl(env, "batch", stdin="[" * 50_000 + "]" * 50_000)
    assert res.returncode == errors.USAGE and "nested too deeply" in one_error(res)
    res = msrctl(env, "batch", stdin="[]")
    assert res.returncode == errors.USAGE and one_error(res).startswith("<stdin>: no ops: the JSON holds an empty list")


def _commands() -> list[list[str]]:
    from msrctl.cli.main import COMMANDS, app

    allowlist = typer.main.get_command(app).get_command(None, "allowlist")  # type: ignore[attr-defined]
    names = [[name] for name, entry in COMMANDS.items() if entry.attr != "app"]
    names += [["allowlist", name] for name in allowlist.list_commands(None)]
    return [[], ["allowlist"], *names]


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c) or "msrctl")
def test_help_reads_the_same_on_every_typer(env: dict[str, str], cmd: list[str]) -> None:
    """typer >= 0.2x would print {MSR}, <bool>, <list[str]> and cut long options in boxes."""
    res = msrctl(dict(env, COLUMNS="100"), *cmd, "--help")
    assert res.returncode == 0 and res.stderr == ""
    text = res.stdout
    assert text.startswith(f"Usage: msrctl {' '.join(cmd)}".rstrip() + " ")
    assert "{" not in text.splitlines()[0]  # typer 0.29's {MSR}
    for bad in (r"<[a-z][a-z|\[\] ]*>", "╭", r"\b(TEXT|INTEGER|BOOLEAN|FLOAT)\b", r"\.\.\.\.\.\."):
        assert not re.search(bad, text), f"{bad!r} in:\n{text}"


@pytest.mark.parametrize("cmd", [[], ["allowlist"]])
def test_no_arguments_print_the_help_once(env: dict[str, str], cmd: list[str]) -> None:
    res = msrctl(env, *cmd)
    assert res.returncode == 0
    assert (res.stdout + res.stderr).count("Usage: ") == 1


@pytest.mark.parametrize(
    ("argv", "last"),
    [
        (["read", "-x", "-d", "0x10"], "d"),
        (["read", "-d", "-x", "0x10"], "x"),
        (["read", "-dX", "0x10"], "X"),  # a cluster, in order
        (["read", "--octal", "-u", "--raw", "0x10"], "r"),
        (["read", "-p1", "-d", "0x10"], "d"),  # -p's value in the same word ends the cluster
        (["read", "-o", "0x10", "--", "-x"], "o"),  # nothing after --
    ],
)
def test_rdmsr_base_options_last_one_wins(argv: list[str], last: str) -> None:
    from msrctl.cli import main as cli

    assert cli._last_flag(argv, cli._BASE_LONG, takes_value="pf") == last


def test_rdmsr_version_and_hex_cpu(env: dict[str, str]) -> None:
    from msrctl import __version__

    for args in (["-V"], ["read", "-V"], ["write", "-V"], ["--version"]):
        res = msrctl(env, *args)
        assert (res.returncode, res.stdout) == (0, f"msrctl {__version__}\n")
    res = msrctl(env, "read", "-p", "0x1", "0x10")  # rdmsr takes -p 0x1: past parsing, to the missing device
    assert res.returncode == errors.NOT_LOADED
