"""The Debian packages end to end, as root inside the QEMU guest (tests/deb/run.sh).

The tests run in file order and build on each other, like an administrator
would: install both .debs with apt (no network), DKMS builds the module for
the running kernel, udev gives /dev/msrdrv to group msr, a member of the group
is refused (deny by default, with the command to ask an admin for) until an
admin loads an allowlist and then reads what it lists, anyone else is refused,
remove and purge leave nothing behind, a reinstall works, and Debian's own
dkms-autopkgtest passes.

Environment: MSRDRV_DEB_DIR (the .debs, default build/deb), MSRDRV_RESULTS
(logs and deb-timing.json are written there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEB_DIR = Path(os.environ.get("MSRDRV_DEB_DIR", REPO / "build" / "deb"))
RESULTS = Path(os.environ.get("MSRDRV_RESULTS", REPO / "results"))
KVER = os.uname().release
VERSION = (REPO / "dkms" / "VERSION").read_text().strip()
PACKAGES = ("msrdrv-dkms", "msrctl")
NODE = Path("/dev/msrdrv")
RULE = Path("/usr/lib/udev/rules.d/60-msrdrv.rules")
GROUP = "msr"
MEMBER, OUTSIDER = "debmsr", "debother"
LOCAL = Path("/tmp/msrdrv-debs")  # the .debs, readable by apt's _apt user
PERMISSION_EXIT = 3  # msrctl/errors.py PERMISSION
APIC_BASE = {0: "fee00900"}  # CPU 0 is the bootstrap processor (bit 8)
APIC_BASE_AP = "fee00800"
ASK_ADMIN = "ask an admin to run: sudo msrctl allowlist load --profile telemetry"  # msrctl/errors.py

# Everything the two packages and DKMS put on the system: present after the
# install, gone after remove (and purge).
INSTALLED = (
    f"/usr/src/msrdrv-{VERSION}/dkms.conf",
    f"/usr/src/msrdrv-{VERSION}/VERSION",
    "/var/lib/dkms/msrdrv",
    str(RULE),
    "/usr/lib/sysusers.d/msrdrv-dkms.conf",
    "/usr/bin/msrctl",
    "/usr/lib/python3/dist-packages/msrctl",
    "/usr/share/man/man1/msrctl.1.gz",
    "/usr/share/bash-completion/completions/msrctl",
    "/usr/share/doc/msrdrv-dkms",
    "/usr/share/doc/msrctl",
)
# Where a leftover file could hide, searched by name after purge.
SEARCHED = ("/etc", "/var/lib", "/usr/src", "/usr/lib", "/usr/share/doc", "/usr/share/man/man1", "/lib/modules")

timings: dict[str, float | None] = {}


def run(*cmd: str, check: bool = True, timeout: int = 900, **kw) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    return p


def apt(log: str, *args: str) -> float:
    """apt-get, non-interactive, its output streamed to RESULTS/log. Returns seconds taken.

    The guest has no network, so anything apt would have to download fails
    the step (--no-download cannot be used: apt 2.6 rejects local .debs with it).
    """
    t0 = time.monotonic()
    with (RESULTS / log).open("w") as out:
        out.write(f"$ apt-get -y {' '.join(args)}\n")
        out.flush()
        try:
            p = subprocess.run(
                ["apt-get", "-y", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=1200,
                check=False,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            )
        except subprocess.TimeoutExpired:
            out.write("\n--- timed out; processes:\n")
            out.write(run("ps", "-eo", "pid,ppid,etime,time,args", check=False).stdout)
            raise
    took = time.monotonic() - t0
    assert p.returncode == 0, f"apt-get {' '.join(args)} failed ({p.returncode}); see {RESULTS / log}"
    return took


def record(**values: float | None) -> None:
    timings.update(values)
    (RESULTS / "deb-timing.json").write_text(json.dumps({"kernel": KVER, **timings}, indent=2) + "\n")


def dkms_status() -> str:
    return run("dkms", "status", "msrdrv").stdout.strip()


def module_files() -> list[Path]:
    return sorted(Path("/lib/modules").glob("*/updates/dkms/msrdrv.ko*"))


def loaded() -> bool:
    return any(line.split()[0] == "msrdrv" for line in Path("/proc/modules").read_text().splitlines())


def unload() -> None:
    """rmmod, not modprobe -r: after apt remove the .ko is gone but the module may still be loaded."""
    if loaded():
        run("rmmod", "msrdrv")
    run("udevadm", "settle")
    assert not loaded()


def package_state(name: str) -> str:
    """dpkg's two-letter state ('ii', 'rc', ...), or '' when dpkg does not know the package."""
    p = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", name, check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def group_gid() -> int | None:
    p = run("getent", "group", GROUP, check=False)
    return int(p.stdout.split(":")[2]) if p.returncode == 0 else None


def dkms_build_seconds() -> float | None:
    """From DKMS's make.log: its header has the start time, its mtime the end."""
    logs = sorted(Path(f"/var/lib/dkms/msrdrv/{VERSION}").glob(f"{KVER}/*/log/make.log"))
    if not logs:
        return None
    lines = logs[0].read_text(errors="replace").splitlines()
    if len(lines) < 2:
        return None
    p = run("date", "-d", lines[1].strip(), "+%s", check=False)
    if p.returncode != 0:
        return None
    return round(max(0.0, logs[0].stat().st_mtime - int(p.stdout)), 1)


def assert_node_is_root_msr_0660() -> None:
    run("udevadm", "settle")
    st = NODE.stat()
    assert stat.S_ISCHR(st.st_mode), f"{NODE} is not a character device"
    assert (st.st_uid, st.st_gid) == (0, group_gid()), f"{NODE} is {st.st_uid}:{st.st_gid}, want root:{GROUP}"
    assert stat.S_IMODE(st.st_mode) == 0o660, f"{NODE} has mode {stat.S_IMODE(st.st_mode):04o}, want 0660"


def as_member(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    return run("runuser", "-u", MEMBER, "--", "msrctl", *args, check=check, **kw)


def assert_member_refused_without_a_list() -> None:
    """Deny by default: one line naming what is missing and the command to ask an admin for."""
    assert json.loads(run("msrctl", "allowlist", "show", "--json").stdout) == []
    p = as_member("read", "IA32_TIME_STAMP_COUNTER", check=False)
    assert p.returncode == PERMISSION_EXIT, (p.returncode, p.stdout, p.stderr)
    assert not p.stdout.strip()
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith("msrctl: error: read of MSR 0x10 (IA32_TIME_STAMP_COUNTER) on CPU 0 refused: ")
    assert "no msrdrv allowlist is loaded" in lines[0] and lines[0].endswith(ASK_ADMIN), lines[0]
    p = as_member("status", check=False)
    assert p.returncode == PERMISSION_EXIT and f"  fix:     {ASK_ADMIN}\n" in p.stdout, p.stdout


def load_telemetry_and_apic_base() -> None:
    """The telemetry profile merged with a site line from stdin (APIC_BASE tells the CPUs apart)."""
    p = run("msrctl", "allowlist", "load", "-", "--profile", "telemetry", input="IA32_APIC_BASE 0x0\n")
    assert p.stdout.startswith("allowlist loaded: "), p.stdout
    assert "from <stdin> + profile telemetry" in p.stdout, p.stdout


def assert_member_reads_apic_base() -> None:
    p = as_member("read", "-a", "IA32_APIC_BASE")
    values = p.stdout.split()
    assert len(values) == os.cpu_count(), p.stdout
    assert values[0].lower() == APIC_BASE[0], p.stdout
    assert all(v.lower() == APIC_BASE_AP for v in values[1:]), p.stdout


def assert_member_reads_listed_msrs() -> None:
    """After the list: listed MSRs on every CPU (TCG gives TSC and MPERF as 0; the op must succeed)."""
    assert_member_reads_apic_base()
    for msr in ("IA32_TIME_STAMP_COUNTER", "IA32_MPERF"):
        assert len(as_member("read", "-a", msr).stdout.split()) == os.cpu_count(), msr
    p = as_member("read", "IA32_EFER", check=False)  # not listed
    assert p.returncode == PERMISSION_EXIT and "does not list it" in p.stderr, p.stderr
    p = as_member("write", "IA32_TSC_AUX", "0x1", check=False)  # listed nowhere for writing
    assert p.returncode == PERMISSION_EXIT and "allowlist" in p.stderr, p.stderr


def assert_dkms_installed() -> None:
    status = dkms_status()
    assert re.search(rf"^msrdrv/{re.escape(VERSION)}, {re.escape(KVER)}, \S+: installed", status, re.M), status
    assert module_files(), "no msrdrv.ko under /lib/modules/*/updates/dkms"
    assert run("modinfo", "-F", "version", "msrdrv").stdout.strip() == VERSION


def install_both(log: str) -> float:
    return apt(log, "install", *(str(d) for d in sorted(LOCAL.glob("*.deb"))))


# --- the story, in order ----------------------------------------------------------------


def test_the_two_packages_were_built() -> None:
    debs = sorted(DEB_DIR.glob("*.deb"))
    fields = {run("dpkg-deb", "-f", str(d), "Package").stdout.strip(): d for d in debs}
    assert set(fields) == set(PACKAGES), f"{DEB_DIR}: {[d.name for d in debs]} (run make deb)"
    for name, deb in fields.items():
        version = run("dpkg-deb", "-f", str(deb), "Version").stdout.strip()
        assert version.split(":", 1)[-1].rsplit("-", 1)[0] == VERSION, name  # the revision is the packager's
        assert run("dpkg-deb", "-f", str(deb), "Architecture").stdout.strip() == "all", name
    shutil.rmtree(LOCAL, ignore_errors=True)
    LOCAL.mkdir(mode=0o755)
    for deb in fields.values():
        shutil.copy(deb, LOCAL)
        (LOCAL / deb.name).chmod(0o644)


def test_the_guest_starts_clean() -> None:
    for name in PACKAGES:
        assert package_state(name) in ("", "un", "pn"), f"{name} is already installed"
    assert group_gid() is None, f"group {GROUP} exists before the install"
    assert not dkms_status()
    assert not loaded()
    assert not NODE.exists()


def test_apt_installs_both_and_dkms_builds_the_module() -> None:
    took = install_both("deb-install.log")
    record(install_s=round(took, 1), dkms_build_s=dkms_build_seconds())
    for name in PACKAGES:
        assert package_state(name) == "ii", name
    assert_dkms_installed()
    for path in INSTALLED:
        assert Path(path).exists(), f"{path} missing after the install"


def test_the_install_creates_the_system_group() -> None:
    gid = group_gid()
    assert gid is not None, f"group {GROUP} was not created"
    assert gid < 1000, f"group {GROUP} has gid {gid}: not a system group"


def test_installed_files_carry_one_version() -> None:
    conf = Path(f"/usr/src/msrdrv-{VERSION}/dkms.conf").read_text()
    assert f'PACKAGE_VERSION="{VERSION}"' in conf
    assert Path(f"/usr/src/msrdrv-{VERSION}/VERSION").read_text().strip() == VERSION
    assert VERSION in run("msrctl", "--version").stdout
    assert f'GROUP="{GROUP}"' in RULE.read_text()


def test_udev_alone_gives_the_node_its_group_and_mode() -> None:
    """modprobe only: devtmpfs makes the node, the packaged rule sets root:msr 0660."""
    unload()
    run("modprobe", "msrdrv")
    assert_node_is_root_msr_0660()
    unload()
    assert not NODE.exists()


def test_msrctl_load() -> None:
    run("msrctl", "load")
    assert loaded()
    assert_node_is_root_msr_0660()


def test_a_group_member_without_a_list_is_refused_clearly() -> None:
    run("useradd", "--system", "--no-create-home", "--shell", "/bin/sh", "--groups", GROUP, MEMBER)
    assert_member_refused_without_a_list()


def test_after_an_admin_loads_a_list_a_member_reads_every_cpu() -> None:
    load_telemetry_and_apic_base()
    try:
        assert_member_reads_listed_msrs()
    finally:
        run("msrctl", "allowlist", "clear")
    assert_member_refused_without_a_list()


def test_a_user_outside_the_group_gets_the_permission_error() -> None:
    run("useradd", "--system", "--no-create-home", "--shell", "/bin/sh", OUTSIDER)
    p = run("runuser", "-u", OUTSIDER, "--", "msrctl", "read", "-a", "IA32_APIC_BASE", check=False)
    assert p.returncode == PERMISSION_EXIT, (p.returncode, p.stdout, p.stderr)
    assert "permission denied" in p.stderr.lower(), p.stderr
    assert f"group {GROUP}" in p.stderr, p.stderr
    assert not p.stdout.strip()


def test_the_boot_time_allowlist_unit_is_off_and_works() -> None:
    """msrdrv-allowlist.service ships disabled; its commands load /etc/msrdrv/allowlist."""
    unit = Path("/usr/lib/systemd/system/msrdrv-allowlist.service")
    assert unit.is_file()
    assert not list(Path("/etc/systemd/system").glob("*.wants/msrdrv-allowlist.service"))
    conf = Path("/etc/msrdrv/allowlist")
    conf.parent.mkdir()
    try:
        run("msrctl", "allowlist", "render", "telemetry", "-o", str(conf))
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                run(*line[len("ExecStart=") :].split())
        rendered = [line for line in conf.read_text().splitlines() if line and not line.startswith("#")]
        assert len(json.loads(run("msrctl", "allowlist", "show", "--json").stdout)) == len(rendered) > 0
        p = run("runuser", "-u", MEMBER, "--", "msrctl", "read", "IA32_APIC_BASE", check=False)
        assert p.returncode == PERMISSION_EXIT and "allowlist" in p.stderr, (p.returncode, p.stderr)
        assert run("runuser", "-u", MEMBER, "--", "msrctl", "read", "tsc").stdout.strip()
    finally:
        run("msrctl", "allowlist", "clear", check=False)
        conf.unlink(missing_ok=True)
        conf.parent.rmdir()


def test_bash_completion_is_installed_and_completes() -> None:
    script = (
        "source /usr/share/bash-completion/completions/msrctl\n"
        "COMP_WORDS=(msrctl re); COMP_CWORD=1; _msrctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
        "COMP_WORDS=(msrctl read --a); COMP_CWORD=2; _msrctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    got = run("bash", "-c", script).stdout.split()
    assert {"read", "registers", "--all"} <= set(got), got


def test_the_man_page_covers_the_commands() -> None:
    """click-man's pages: msrctl(1) lists the commands, each has its own msrctl-CMD(1)."""
    text = run("zcat", "/usr/share/man/man1/msrctl.1.gz").stdout
    assert text.startswith('.TH "MSRCTL" "1" ')
    for cmd in ("load", "status", "read", "write"):
        assert f"\\fBmsrctl-{cmd}\\fP(1)" in text, cmd
        page = run("zcat", f"/usr/share/man/man1/msrctl-{cmd}.1.gz").stdout
        assert page.startswith(f'.TH "MSRCTL {cmd.upper()}" "1" '), cmd


def test_apt_remove_takes_the_module_and_files_away() -> None:
    assert loaded(), "msrctl load should have left the module loaded"
    apt("deb-remove.log", "remove", *PACKAGES)
    assert not dkms_status(), dkms_status()
    assert not module_files(), module_files()
    for path in INSTALLED:
        assert not Path(path).exists(), f"{path} left after apt-get remove"
    # Still loaded from before; it must unload cleanly.
    unload()
    assert not NODE.exists()


def test_apt_purge_leaves_nothing_behind() -> None:
    apt("deb-purge.log", "purge", *PACKAGES)
    for name in PACKAGES:
        assert package_state(name) in ("", "un", "pn"), f"{name}: {package_state(name)} after purge"
        assert not list(Path("/var/lib/dpkg/info").glob(f"{name}.*")), name
    p = run("find", *SEARCHED, "-xdev", "(", "-iname", "*msrdrv*", "-o", "-iname", "*msrctl*", ")", check=False)
    assert not p.stdout.strip(), f"left after purge:\n{p.stdout}"
    # Documented policy (README): like Debian's other system groups, msr stays.
    assert group_gid() is not None


def test_a_reinstall_works_again() -> None:
    record(reinstall_s=round(install_both("deb-reinstall.log"), 1))
    assert_dkms_installed()
    run("msrctl", "load")
    assert_node_is_root_msr_0660()
    assert_member_refused_without_a_list()  # a new module starts with no list
    load_telemetry_and_apic_base()
    assert_member_reads_apic_base()
    unload()


def test_debian_dkms_autopkgtest() -> None:
    """/usr/lib/dkms/dkms-autopkgtest against a local file: repository of the .debs."""
    tool = Path("/usr/lib/dkms/dkms-autopkgtest")
    if not tool.exists():
        pytest.skip(f"{tool} not present")
    apt_dir = Path("/tmp/msrdrv-apt")
    shutil.rmtree(apt_dir, ignore_errors=True)
    (apt_dir / "lists" / "partial").mkdir(parents=True)
    (apt_dir / "parts").mkdir()
    packages = run("dpkg-scanpackages", "--multiversion", ".", cwd=LOCAL).stdout
    (LOCAL / "Packages").write_text(packages)
    (apt_dir / "sources.list").write_text(f"deb [trusted=yes] file:{LOCAL} ./\n")
    (apt_dir / "apt.conf").write_text(
        f'Dir::Etc::SourceList "{apt_dir}/sources.list";\n'
        f'Dir::Etc::SourceParts "{apt_dir}/parts";\n'
        f'Dir::State::Lists "{apt_dir}/lists";\n'
        'Acquire::Languages "none";\n'
    )
    env = dict(os.environ, APT_CONFIG=str(apt_dir / "apt.conf"), AUTOPKGTEST_ARTIFACTS=str(RESULTS))
    run("apt-get", "update", env=env)
    t0 = time.monotonic()
    p = run(str(tool), "msrdrv-dkms", check=False, cwd="/tmp", env=env)
    record(autopkgtest_s=round(time.monotonic() - t0, 1))
    (RESULTS / "deb-autopkgtest.log").write_text(p.stdout + p.stderr)
    assert p.returncode == 0, f"dkms-autopkgtest failed; see {RESULTS / 'deb-autopkgtest.log'}"
    assert f"I: PASS {KVER}" in p.stdout, p.stdout[-2000:]
