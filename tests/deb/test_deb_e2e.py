"""The Debian packages end to end, as root inside the QEMU guest (tests/deb/run.sh).

The tests run in file order and build on each other, like an administrator
would: install both .debs with apt (no network) on a machine without the
kernel headers (a clear message, nothing half-installed), then the headers'
own DKMS hook builds the module; udev gives /dev/msrdrv to group msr, a member
of the group is refused (deny by default, with the command to ask an admin
for) until an admin loads an allowlist and then reads what it lists, anyone
else is refused; an upgrade to a newer release with the module loaded and in
use keeps the group, the rule and the running module, and DKMS swaps the
versions; remove and purge with the module loaded leave nothing behind; and
the real autopkgtest runner runs the source package's Testsuite
(autopkgtest-pkg-dkms) against the .debs.

Environment: MSRDRV_DEB_DIR (the .debs, the .dsc and its tarballs; default
build/deb), MSRDRV_DEB_UPGRADE_DIR (the same packages as a newer upstream
version, default build/deb-upgrade), MSRDRV_RESULTS (logs and deb-timing.json
are written there).
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
UPGRADE_DIR = Path(os.environ.get("MSRDRV_DEB_UPGRADE_DIR", REPO / "build" / "deb-upgrade"))
RESULTS = Path(os.environ.get("MSRDRV_RESULTS", REPO / "results"))
KVER = os.uname().release
VERSION = (REPO / "dkms" / "VERSION").read_text().strip()
PACKAGES = ("msrdrv-dkms", "msrctl")
NODE = Path("/dev/msrdrv")
RULE = Path("/usr/lib/udev/rules.d/60-msrdrv.rules")
GROUP = "msr"
MEMBER, OUTSIDER = "debmsr", "debother"
LOCAL = Path("/tmp/msrdrv-debs")  # the .debs, readable by apt's _apt user
LOCAL_UPGRADE = Path("/tmp/msrdrv-debs-upgrade")
# The guest has no network: apt reads no mirror lists (Debian's would only cost
# time here), just dpkg's status and the local .debs.
NO_LISTS = Path("/tmp/msrdrv-apt-lists")
HEADERS = Path(f"/lib/modules/{KVER}/build")
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
# Where a leftover file could hide, searched by name after purge, with how
# deep (the places packages, DKMS and the maintainer scripts write to; a whole
# /usr walk takes minutes over the guest's 9p root under TCG).
SEARCHED = {
    "/etc": 9,
    "/var/lib": 3,
    "/var/cache": 2,
    "/usr/src": 1,
    "/usr/lib": 3,
    "/usr/lib/python3/dist-packages": 1,
    f"/usr/lib/modules/{KVER}": 9,
    "/usr/share/doc": 1,
    "/usr/share/man/man1": 1,
    "/usr/share/bash-completion/completions": 1,
    "/usr/bin": 1,
    "/usr/sbin": 1,
}

timings: dict[str, float | None] = {}


def run(*cmd: str, check: bool = True, timeout: int = 900, **kw) -> subprocess.CompletedProcess[str]:
    """cmd, its output captured; timeout is this step's limit and fails the test naming the step."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s: the machine is overloaded or the step hangs")
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    return p


def apt(log: str, *args: str, limit: int = 1200) -> float:
    """apt-get, non-interactive, its output streamed to RESULTS/log. Returns seconds taken.

    limit: this step's time limit; an install that builds the module takes
    about 330 s under TCG on an idle 2-core machine, a remove about 100 s;
    the upgrade (two dkms runs) took over 900 s with three other guests running.

    The guest has no network, so anything apt would have to download fails
    the step (--no-download cannot be used: apt 2.6 rejects local .debs with it).
    """
    t0 = time.monotonic()
    with (RESULTS / log).open("w") as out:
        out.write(f"$ apt-get -y {' '.join(args)}\n")
        out.flush()
        try:
            p = subprocess.run(
                ["apt-get", "-y", "-o", f"Dir::State::Lists={NO_LISTS}", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=limit,
                check=False,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            )
        except subprocess.TimeoutExpired:
            out.write("\n--- timed out; processes:\n")
            out.write(run("ps", "-eo", "pid,ppid,etime,time,args", check=False).stdout)
            pytest.fail(
                f"apt-get {args[0]} did not finish within {limit} s (a few hundred seconds on an idle 2-core "
                f"machine): the machine is overloaded or apt hangs; see {RESULTS / log}"
            )
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


def install_both(log: str, where: Path = LOCAL) -> float:
    return apt(log, "install", *(str(d) for d in sorted(where.glob("*.deb"))))


def deb_version(name: str) -> str:
    return run("dpkg-query", "-W", "-f=${Version}", name).stdout.strip()


def upstream(version: str) -> str:
    """The upstream part of a Debian version (no epoch, no revision)."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def loaded_version() -> str:
    return Path("/sys/module/msrdrv/version").read_text().strip()


def copy_debs(src: Path, dest: Path) -> dict[str, Path]:
    """The two .debs of src (checked: both packages, arch all, one upstream version) into dest."""
    debs = sorted(src.glob("*.deb"))
    fields = {run("dpkg-deb", "-f", str(d), "Package").stdout.strip(): d for d in debs}
    assert set(fields) == set(PACKAGES), f"{src}: {[d.name for d in debs]} (run make deb)"
    versions = {upstream(run("dpkg-deb", "-f", str(d), "Version").stdout.strip()) for d in debs}
    assert len(versions) == 1, versions
    for name, deb in fields.items():
        assert run("dpkg-deb", "-f", str(deb), "Architecture").stdout.strip() == "all", name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(mode=0o755)
    for f in debs:
        shutil.copy(f, dest)
        (dest / f.name).chmod(0o644)
    return fields


def upgrade_version() -> str:
    return upstream(run("dpkg-deb", "-f", str(next(LOCAL_UPGRADE.glob("msrctl_*.deb"))), "Version").stdout.strip())


# --- the story, in order ----------------------------------------------------------------


def test_the_packages_were_built() -> None:
    """Both .debs of this release and of the newer one the upgrade test installs, and the .dsc."""
    fields = copy_debs(DEB_DIR, LOCAL)
    for name, deb in fields.items():
        assert upstream(run("dpkg-deb", "-f", str(deb), "Version").stdout.strip()) == VERSION, name
    assert list(DEB_DIR.glob(f"msrdrv_{VERSION}-*.dsc")), f"no source package in {DEB_DIR} (run make deb)"
    assert list(DEB_DIR.glob(f"msrdrv_{VERSION}-*_amd64.changes")), f"no .changes in {DEB_DIR} (run make deb)"
    copy_debs(UPGRADE_DIR, LOCAL_UPGRADE)
    assert run("dpkg", "--compare-versions", upgrade_version(), "gt", VERSION, check=False).returncode == 0
    shutil.rmtree(NO_LISTS, ignore_errors=True)
    (NO_LISTS / "partial").mkdir(parents=True)


def test_the_guest_starts_clean() -> None:
    for name in PACKAGES:
        assert package_state(name) in ("", "un", "pn"), f"{name} is already installed"
    assert group_gid() is None, f"group {GROUP} exists before the install"
    assert not dkms_status()
    assert not loaded()
    assert not NODE.exists()
    assert (HEADERS / "Makefile").is_file(), f"no kernel headers for {KVER} in the guest"


def test_without_kernel_headers_apt_installs_both_and_says_what_is_missing() -> None:
    """The headers hidden (an empty directory over them): the packages install, DKMS says it
    skipped the build, nothing is half-installed, and msrctl names the missing package."""
    target = HEADERS.resolve()
    run("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "msrdrv-no-headers", str(target))
    try:
        took = install_both("deb-install.log")
        record(install_without_headers_s=round(took, 1))
        log = (RESULTS / "deb-install.log").read_text()
        assert "kernel headers for this kernel do not seem to be installed" in log, log[-2000:]
        for name in PACKAGES:
            assert package_state(name) == "ii", name
        assert not run("dpkg", "--audit").stdout.strip()  # nothing half-installed or half-configured
        assert dkms_status() == f"msrdrv/{VERSION}: added"
        assert not module_files()
        p = run("msrctl", "load", check=False)
        assert p.returncode == 6, (p.returncode, p.stderr)  # msrctl/errors.py MODULE
        assert p.stderr.strip() == (
            f"msrctl: error: cannot load msrdrv: DKMS has msrdrv {VERSION} but has not built it for kernel {KVER}: "
            f"the kernel headers are not installed; install them: sudo apt install linux-headers-{KVER} "
            "(DKMS then builds msrdrv by itself)"
        ), p.stderr
        p = run("msrctl", "status", check=False)
        assert p.returncode == 5 and f"install them: sudo apt install linux-headers-{KVER}" in p.stdout, p.stdout
    finally:
        run("umount", str(target), check=False)


def test_installing_the_headers_builds_the_module() -> None:
    """linux-headers-* postinst runs /etc/kernel/header_postinst.d/*: DKMS's hook builds msrdrv."""
    hook = Path("/etc/kernel/header_postinst.d/dkms")
    assert hook.is_file(), f"{hook} missing (dkms)"
    t0 = time.monotonic()
    p = run(str(hook), KVER, timeout=900)
    record(headers_hook_s=round(time.monotonic() - t0, 1), dkms_build_s=dkms_build_seconds())
    (RESULTS / "deb-headers-hook.log").write_text(p.stdout + p.stderr)
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


def test_the_exporter_unit_is_installed_and_off() -> None:
    """msrctl-exporter.service ships disabled (dh_installsystemd --no-enable), hardened and
    unprivileged; the fleet examples come with it."""
    unit = Path("/usr/lib/systemd/system/msrctl-exporter.service")
    assert unit.is_file()
    assert not list(Path("/etc/systemd/system").glob("*.wants/msrctl-exporter.service"))
    text = unit.read_text()
    assert "ExecStart=/usr/bin/msrctl exporter\n" in text and "DynamicUser=yes\n" in text
    assert "SupplementaryGroups=msr\n" in text
    examples = Path("/usr/share/doc/msrctl/examples")
    assert {"prometheus.yml", "msrctl.rules.yml"} <= {p.name for p in examples.iterdir()}
    p = run("msrctl", "exporter", "--listen", "nowhere", check=False)
    assert p.returncode == 64 and "bad listen address 'nowhere'" in p.stderr, p.stderr


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


def test_an_upgrade_with_the_module_in_use_keeps_it_running_and_swaps_the_dkms_version() -> None:
    """apt installs the newer release while msrdrv is loaded and a member holds the device open."""
    assert loaded() and loaded_version() == VERSION
    new = upgrade_version()
    gid = group_gid()
    load_telemetry_and_apic_base()
    holder = subprocess.Popen(
        ["runuser", "-u", MEMBER, "--", "sh", "-c", "exec 3</dev/msrdrv; read line; msrctl read IA32_APIC_BASE"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        took = install_both("deb-upgrade.log", LOCAL_UPGRADE)
        record(upgrade_s=round(took, 1))
        out, err = holder.communicate("go\n", timeout=120)
    finally:
        holder.kill()
    assert holder.returncode == 0 and out.strip().lower() == APIC_BASE[0], (holder.returncode, out, err)
    for name in PACKAGES:
        assert package_state(name) == "ii" and upstream(deb_version(name)) == new, name
    status = dkms_status()
    assert re.fullmatch(rf"msrdrv/{re.escape(new)}, {re.escape(KVER)}, \S+: installed", status), status
    assert not Path(f"/usr/src/msrdrv-{VERSION}").exists() and not Path(f"/var/lib/dkms/msrdrv/{VERSION}").exists()
    assert run("modinfo", "-F", "version", "msrdrv").stdout.strip() == new
    # The running module is untouched: same version, same allowlist, same node.
    assert loaded_version() == VERSION
    assert_member_reads_apic_base()
    assert group_gid() == gid and RULE.is_file()
    assert_node_is_root_msr_0660()
    assert new in run("msrctl", "--version").stdout
    run("msrctl", "allowlist", "clear")
    # Reloading picks the new build; a new module starts with no list.
    run("msrctl", "unload")
    run("msrctl", "load")
    assert loaded_version() == new
    assert_node_is_root_msr_0660()
    assert_member_refused_without_a_list()


def test_apt_remove_takes_the_module_and_files_away() -> None:
    assert loaded(), "msrctl load should have left the module loaded"
    new = upgrade_version()
    apt("deb-remove.log", "remove", *PACKAGES)
    assert not dkms_status(), dkms_status()
    assert not module_files(), module_files()
    for path in INSTALLED:
        assert not Path(path.replace(VERSION, new)).exists(), f"{path} left after apt-get remove"
    assert loaded() and NODE.exists()  # remove does not unload a module in use


def test_apt_purge_leaves_nothing_behind() -> None:
    assert loaded(), "still loaded from before the remove"
    apt("deb-purge.log", "purge", *PACKAGES)
    # Still loaded; it must unload cleanly, and its node go with it.
    unload()
    assert not NODE.exists()
    for name in PACKAGES:
        assert package_state(name) in ("", "un", "pn"), f"{name}: {package_state(name)} after purge"
        assert not list(Path("/var/lib/dpkg/info").glob(f"{name}.*")), name
    left = []
    for top, depth in SEARCHED.items():
        name = ("(", "-iname", "*msrdrv*", "-o", "-iname", "*msrctl*", ")")
        p = run("find", top, "-xdev", "-maxdepth", str(depth), *name, check=False)
        left += p.stdout.split()
    assert not left, f"left after purge: {left}"
    # Documented policy (docs/packaging.md): like Debian's other system groups, msr stays.
    assert group_gid() is not None


def test_autopkgtest_runs_the_source_packages_testsuite() -> None:
    """The real runner (autopkgtest, null virt server: this guest is the testbed) on the
    .changes (the .dsc and both .debs); autodep8 turns the source's Testsuite:
    autopkgtest-pkg-dkms into dkms-autopkgtest, which purges, installs and builds again."""
    if not shutil.which("autopkgtest"):
        pytest.fail("autopkgtest is not installed (tests/bootstrap.sh installs autopkgtest and autodep8)")
    # The full build's .changes: the .dsc (and its tarballs) and both .debs.
    changes = next(DEB_DIR.glob(f"msrdrv_{VERSION}-*_amd64.changes"))
    out = RESULTS / "deb-autopkgtest"
    shutil.rmtree(out, ignore_errors=True)
    # The guest's only apt source is the one autopkgtest adds for the .debs.
    for f in Path("/etc/apt/sources.list.d").glob("*"):
        f.unlink()
    Path("/etc/apt/sources.list").write_text("")
    t0 = time.monotonic()
    # breaks-testbed asks for a testbed that can be reset: this guest's
    # overlays vanish when it exits, which null cannot tell autopkgtest.
    args = ("--ignore-restrictions=breaks-testbed", "--output-dir", str(out), str(changes), "--", "null")
    # About 500 s on an idle 2-core machine (a purge, an install, a build under TCG).
    p = run("autopkgtest", *args, check=False, timeout=1800)
    record(autopkgtest_s=round(time.monotonic() - t0, 1))
    (RESULTS / "deb-autopkgtest.log").write_text(p.stdout + p.stderr)
    summary = (out / "summary").read_text() if (out / "summary").exists() else ""
    # 8: every test that ran is superficial, as autodep8 marks dkms-autopkgtest
    # (it proves the module builds, not what it does); any failure is 4 or more.
    assert p.returncode in (0, 8), (
        f"autopkgtest exited {p.returncode}; see {RESULTS / 'deb-autopkgtest.log'}\n{summary}"
    )
    assert re.fullmatch(r"dkms-autopkgtest\s+PASS \(superficial\)", summary.strip()), summary
    log = (out / "log").read_text(errors="replace")
    assert f"I: PASS {KVER}" in log, log[-2000:]
