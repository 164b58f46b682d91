"""The checks of one boot of the system test, run as root inside the booted guest.

tests/system/run.py boots the image once per stage; the agent in the image
(tests/system/agent) runs `python3 stages.py STAGE SHARE` from the host's 9p
share.  Each check is named, PASS or FAIL, with the commands it ran and their
output as evidence; the stage's results go to SHARE/results/STAGE.json after
every check (a hang still leaves what was found), and SHARE/results/STAGE.action
says whether the agent reboots or powers off.  Python 3 standard library only:
the guest has what the packages under test depend on and nothing else.

    B1  bookworm kernel: install both .debs offline, DKMS, group access, units
    B2  after the reboot: list in force before logins; package upgrade with the
        units running; the kernel ABI upgrade (backports kernel, offline)
    B3  the new kernel: boot order again, then runtime lockdown and writes
    B4  the new kernel with module.sig_enforce=1: the load is refused, explained
    B5  the new kernel with lockdown=integrity: the load is refused, explained
    B6  the new kernel: purge with the exporter running and the module loaded
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Callable

NODE = "/dev/msrdrv"
GROUP = "msr"
MEMBER, OUTSIDER = "sysmember", "sysoutsider"
EXPORTER, ALLOWLIST = "msrctl-exporter.service", "msrdrv-allowlist.service"
UNITS = (ALLOWLIST, EXPORTER)
METRICS = "http://127.0.0.1:9838/metrics"
ALLOWLIST_FILE = Path("/etc/msrdrv/allowlist")
LOCKDOWN = Path("/sys/kernel/security/lockdown")
MOK_FIX = "mokutil --import /var/lib/dkms/mok.pub"
# Local copies: apt's _apt user must be able to read the .debs.
LOCAL_DEBS = Path("/var/tmp/msrdrv-debs")
LOCAL_UPGRADE = Path("/var/tmp/msrdrv-debs-upgrade")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
# apt-daily may hold the dpkg lock for a while at boot.
APT_OPTS = ("-y", "-o", "Dpkg::Use-Pty=0", "-o", "DPkg::Lock::Timeout=600")
EVIDENCE_MAX = 6000


class Out:
    """A finished command: exit status, output, and the evidence text for a check."""

    def __init__(self, argv: list[str], rc: int, out: str, err: str, note: str = "") -> None:
        self.argv, self.rc, self.out, self.err = argv, rc, out, err
        self.text = f"$ {shlex.join(argv)}\n{out}{err}{note}(exit {rc})\n"

    @property
    def both(self) -> str:
        return self.out + self.err


def run(*argv: str, timeout: float = 120, input: str | None = None, env: dict[str, str] | None = None) -> Out:
    """argv with its output captured; past `timeout` it is killed and exits 124, saying so."""
    try:
        p = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=dict(os.environ, **(env or {})),
            check=False,
        )
        return Out(list(argv), p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return Out(list(argv), 124, out, err, f"\n*** did not finish within {timeout:.0f} s: killed\n")
    except OSError as e:
        return Out(list(argv), 127, "", f"{e}\n")


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:]) + "\n"


class Stage:
    """One boot's results: checks (PASS/FAIL with evidence) and facts, saved after each."""

    def __init__(self, name: str, share: Path) -> None:
        self.name, self.share = name, share
        self.results = share / "results"
        self.logs = share / "logs"
        self.t0 = time.monotonic()
        self.data: dict[str, object] = {
            "stage": name,
            "kernel": os.uname().release,
            "cmdline": Path("/proc/cmdline").read_text().strip(),
            "uptime_at_start_s": float(Path("/proc/uptime").read_text().split()[0]),
            "checks": [],
            "facts": {},
            "finished": False,
        }
        self.save()

    def save(self) -> None:
        self.data["stage_s"] = round(time.monotonic() - self.t0, 1)
        tmp = self.results / f"{self.name}.json.tmp"
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.results / f"{self.name}.json")

    def check(self, name: str, ok: bool, evidence: str) -> bool:
        if len(evidence) > EVIDENCE_MAX:
            evidence = evidence[: EVIDENCE_MAX // 2] + "\n[...]\n" + evidence[-EVIDENCE_MAX // 2 :]
        checks = self.data["checks"]
        assert isinstance(checks, list)
        checks.append({"name": name, "ok": bool(ok), "evidence": evidence})
        print(f"{self.name}: {'PASS' if ok else 'FAIL'}: {name}", flush=True)
        self.save()
        return bool(ok)

    def fact(self, key: str, value: object) -> None:
        facts = self.data["facts"]
        assert isinstance(facts, dict)
        facts[key] = value
        self.save()

    def attempt(self, name: str, fn: Callable[[], tuple[bool, str]]) -> bool:
        """A check whose own code may fail: an exception fails it, with the traceback as evidence."""
        try:
            ok, evidence = fn()
        except Exception:
            ok, evidence = False, traceback.format_exc()
        return self.check(name, ok, evidence)

    def apt(self, log: str, *args: str, limit: float) -> Out:
        """apt-get, its output streamed to SHARE/logs/STAGE-log.log; limit names this step's time limit."""
        argv = ["apt-get", *APT_OPTS, *args]
        path = self.logs / f"{self.name}-{log}.log"
        t0 = time.monotonic()
        with path.open("w") as f:
            f.write(f"$ {shlex.join(argv)}\n")
            f.flush()
            try:
                rc = subprocess.run(
                    argv,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    timeout=limit,
                    env=dict(os.environ, **APT_ENV),
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = 124
                f.write(f"\n*** apt-get {args[0]} ran out of its {limit:.0f} s limit; processes:\n")
                f.write(run("ps", "-eo", "pid,etime,time,args").out)
        took = time.monotonic() - t0
        self.fact(f"{log}_s", round(took, 1))
        text = path.read_text(errors="replace")
        head = f"$ apt-get {' '.join(args)}   [{took:.0f} s; full log: logs/{path.name}]\n"
        o = Out(argv, rc, text, "")
        o.text = head + tail(text, 20) + f"(exit {rc})\n"
        return o


# --- probes -------------------------------------------------------------------


def module_loaded() -> bool:
    return any(line.split()[0] == "msrdrv" for line in Path("/proc/modules").read_text().splitlines())


def prop(unit: str, name: str) -> str:
    return run("systemctl", "show", "-p", name, "--value", unit).out.strip()


def unit_state(unit: str) -> str:
    return run("systemctl", "is-active", unit).out.strip()


def unit_summary(unit: str) -> str:
    props = ("ActiveState", "SubState", "Result", "MainPID", "ExecMainStatus", "UnitFileState")
    return f"{unit}: " + " ".join(f"{p}={prop(unit, p)}" for p in props) + "\n"


def allowlist_entries() -> tuple[int, str]:
    """Number of entries of the list in force, and the evidence."""
    o = run("msrctl", "allowlist", "show", "--json")
    try:
        n = len(json.loads(o.out)) if o.rc == 0 else -1
    except ValueError:
        n = -1
    return n, f"{o.text.splitlines()[0]}\n{n} entries (exit {o.rc}){'' if o.rc == 0 else chr(10) + o.err}\n"


def fetch_metrics(wait: float = 180) -> tuple[bool, str]:
    """GET /metrics, retried until `wait` s pass (the exporter's Python start is slow under TCG)."""
    deadline = time.monotonic() + wait
    last = ""
    while True:
        try:
            with urllib.request.urlopen(METRICS, timeout=30) as r:
                body = r.read().decode(errors="replace")
                lines = [x for x in body.splitlines() if re.match(r"(msr|msrctl)_\w+", x)]
                ev = f"GET {METRICS}: HTTP {r.status}, {len(body)} bytes, {len(lines)} msr_/msrctl_ sample lines\n"
                return bool(lines), ev + "\n".join(lines[:8]) + "\n"
        except Exception as e:
            last = f"GET {METRICS}: {e!r}\n"
        if time.monotonic() >= deadline:
            return False, last + f"(retried for {wait:.0f} s)\n"
        time.sleep(3)


def wait_active(unit: str, wait: float = 120) -> str:
    """The unit's state once it is no longer activating/reloading (or after `wait` s)."""
    deadline = time.monotonic() + wait
    while True:
        state = unit_state(unit)
        if state not in ("activating", "reloading", "deactivating") or time.monotonic() >= deadline:
            return state
        time.sleep(2)


def holders() -> list[tuple[int, str]]:
    """Processes with /dev/msrdrv open: (pid, command line)."""
    found = []
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == NODE:
                pid = int(fd.split("/")[2])
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                found.append((pid, cmd))
        except OSError:
            continue
    return sorted(set(found))


def dmesg_lines(pattern: str) -> str:
    out = run("dmesg").out
    return "".join(line + "\n" for line in out.splitlines() if re.search(pattern, line, re.I))


def kernel_trouble() -> tuple[bool, str]:
    # The in-guest suite's rule (tests/vm.py, copied beside this file), and an
    # oops's RIP line; any case.
    from vm import DMESG_BAD

    bad = dmesg_lines(DMESG_BAD.pattern + r"|\bOops|Call Trace|\bRIP:")
    about = dmesg_lines(r"msrdrv(?!-system)")  # not the host name
    return not bad, (bad or "no Oops/BUG/WARNING/Call Trace lines\n") + "dmesg lines naming msrdrv:\n" + about


def copy_debs(src: Path, dst: Path) -> list[str]:
    """The two .debs copied where apt's _apt user can read them; their new paths."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    dst.chmod(0o755)
    paths = []
    for pkg in ("msrdrv-dkms", "msrctl"):
        (deb,) = sorted(src.glob(f"{pkg}_*.deb"))
        shutil.copy(deb, dst / deb.name)
        (dst / deb.name).chmod(0o644)
        paths.append(str(dst / deb.name))
    return paths


def dkms_status() -> Out:
    return run("dkms", "status", "msrdrv", timeout=120)


def dkms_installed_for(kver: str, version: str | None = None) -> tuple[bool, str]:
    o = dkms_status()
    ver = re.escape(version) if version else r"[^,]+"
    pat = rf"^msrdrv/{ver}, {re.escape(kver)}, [^:]+: installed"
    return bool(re.search(pat, o.out, re.M)), o.text


def deb_version(path: Path, pkg: str) -> str:
    (deb,) = sorted(path.glob(f"{pkg}_*.deb"))
    return deb.name.split("_")[1].split("-")[0]


def check_boot_order(st: Stage) -> None:
    """The list is in force before anyone can log in: the unit ran to its end before user sessions began."""
    loaded = module_loaded()
    n, ev = allowlist_entries()
    summary = unit_summary(ALLOWLIST)
    st.check(
        "msrdrv loaded and the allowlist in force after boot (msrdrv-allowlist.service)",
        loaded and n > 0 and prop(ALLOWLIST, "Result") == "success" and unit_state(ALLOWLIST) == "active",
        f"msrdrv in /proc/modules: {loaded}\n{ev}{summary}",
    )
    done = prop(ALLOWLIST, "ExecMainExitTimestampMonotonic")
    active = prop(ALLOWLIST, "ActiveEnterTimestampMonotonic")
    sessions = prop("systemd-user-sessions.service", "InactiveExitTimestampMonotonic")
    sessions_up = prop("systemd-user-sessions.service", "ActiveEnterTimestampMonotonic")
    stamps = (done, active, sessions)
    ok = all(x.isdigit() for x in stamps) and 0 < int(done) <= int(sessions) and int(active) <= int(sessions)
    st.check(
        "msrdrv-allowlist.service finished before systemd-user-sessions.service started",
        ok,
        f"{ALLOWLIST}: ExecMainExitTimestampMonotonic={done} ActiveEnterTimestampMonotonic={active}\n"
        f"systemd-user-sessions.service: InactiveExitTimestampMonotonic={sessions} "
        f"ActiveEnterTimestampMonotonic={sessions_up}\n"
        + (f"margin {(int(sessions) - int(done)) / 1e6:.3f} s\n" if ok else ""),
    )


def check_exporter(st: Stage, when: str) -> int:
    """The exporter is active and serves msr metrics; returns its MainPID."""
    state = wait_active(EXPORTER)
    served, ev = fetch_metrics()
    pid = prop(EXPORTER, "MainPID")
    st.check(f"msrctl-exporter active and serving {when}", state == "active" and served, unit_summary(EXPORTER) + ev)
    return int(pid) if pid.isdigit() else 0


def system_state(st: Stage) -> None:
    """Failed units, for the record (is-system-running stays "starting" while this agent runs)."""
    failed = run("systemctl", "list-units", "--failed", "--no-legend", "--plain").out
    st.fact("failed_units", failed.strip())


# --- stages -------------------------------------------------------------------


def b1(st: Stage) -> str:
    kver = os.uname().release
    debs = copy_debs(st.share / "debs", LOCAL_DEBS)
    o = st.apt("install", "install", *debs, limit=900)
    st.check("apt-get install of both .debs, offline, on bookworm's kernel", o.rc == 0, o.text)
    ok, ev = dkms_installed_for(kver)
    st.check(f"DKMS built msrdrv in the guest for {kver}", ok, ev)
    g = run("getent", "group", GROUP)
    gid = int(g.out.split(":")[2]) if g.rc == 0 else -1
    st.check("group msr exists (a system group)", 0 <= gid < 1000, g.text)

    o = run("msrctl", "load", timeout=120)
    st.check("msrctl load", o.rc == 0 and module_loaded(), o.text)
    run("udevadm", "settle", timeout=60)
    o = run("stat", "-c", "%U:%G %a %F", NODE)
    st.check("/dev/msrdrv is root:msr 0660", o.out.strip() == "root:msr 660 character special file", o.text)

    run("useradd", "--create-home", "--groups", GROUP, MEMBER)
    run("useradd", "--create-home", OUTSIDER)
    ids = run("id", MEMBER).text + run("id", OUTSIDER).text
    o = run("runuser", "-u", MEMBER, "--", "msrctl", "read", "0x10")
    st.check(
        "a member of group msr is refused a read while no allowlist is loaded",
        o.rc != 0 and "allowlist" in o.err.lower(),
        o.text + ids,
    )
    load = run("msrctl", "allowlist", "load", "--profile", "telemetry")
    o = run("runuser", "-u", MEMBER, "--", "msrctl", "read", "0x10")
    st.check(
        "the member reads 0x10 after msrctl allowlist load --profile telemetry",
        load.rc == 0 and o.rc == 0 and bool(re.fullmatch(r"[0-9a-fA-F]+", o.out.strip())),
        o.text + load.text,
    )
    o = run("runuser", "-u", OUTSIDER, "--", "msrctl", "read", "0x10")
    st.check(
        "a user outside group msr cannot open /dev/msrdrv (permission denied)",
        o.rc != 0 and "permission denied" in o.err.lower(),
        o.text,
    )

    ALLOWLIST_FILE.parent.mkdir(parents=True, exist_ok=True)
    o = run("msrctl", "allowlist", "render", "telemetry", "energy", "-o", str(ALLOWLIST_FILE))
    lines = (
        [x for x in ALLOWLIST_FILE.read_text().splitlines() if x.strip() and not x.startswith("#")]
        if (ALLOWLIST_FILE.exists())
        else []
    )
    st.fact("allowlist_file_entries", len(lines))
    st.check(
        "msrctl allowlist render telemetry energy -o /etc/msrdrv/allowlist",
        o.rc == 0 and len(lines) > 0,
        o.text + f"{ALLOWLIST_FILE}: {len(lines)} entries\n",
    )
    o = run("systemctl", "enable", "--now", *UNITS, timeout=300)
    exporter_state = wait_active(EXPORTER)
    states = {u: (unit_state(u), run("systemctl", "is-enabled", u).out.strip()) for u in UNITS}
    n, ev = allowlist_entries()
    st.check(
        "systemctl enable --now msrdrv-allowlist.service msrctl-exporter.service",
        o.rc == 0 and all(s == ("active", "enabled") for s in states.values()) and n == len(lines),
        o.text + "".join(f"{u}: {a}, {e}\n" for u, (a, e) in states.items()) + ev + f"exporter: {exporter_state}\n",
    )
    for unit in UNITS:
        path = f"/usr/lib/systemd/system/{unit}"
        # --man=no: verify looks Documentation=man:... up with man(1), and man-db is
        # no dependency of the packages; the pages themselves are checked here instead.
        o = run("systemd-analyze", "verify", "--man=no", path, timeout=180)
        docs = re.findall(r"man:([\w.-]+)\((\d)\)", Path(path).read_text())
        pages = {f"{n}({s})": Path(f"/usr/share/man/man{s}/{n}.{s}.gz").is_file() for n, s in docs}
        st.check(
            f"systemd-analyze verify {unit}; its Documentation= man pages are installed",
            o.rc == 0 and not o.both.strip() and bool(pages) and all(pages.values()),
            o.text + f"man pages named by Documentation=: {pages}\n",
        )
    o = run("systemd-analyze", "security", "--no-pager", EXPORTER, timeout=180)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\S+)", o.out)
    if m:
        st.fact("exporter_exposure", f"{m.group(1)} {m.group(2)}")
    st.check(
        "systemd-analyze security msrctl-exporter.service (exposure score recorded)",
        bool(m),
        (m.group(0) + "\n" if m else "") + tail(o.text, 12),
    )
    check_exporter(st, "after enable --now")
    st.attempt("no kernel Oops, BUG or WARNING in dmesg", kernel_trouble)
    return "reboot"


def b2(st: Stage) -> str:
    kver = os.uname().release
    check_boot_order(st)
    pid0 = check_exporter(st, "after the reboot")

    # The package upgrade, with both units running.
    new = deb_version(st.share / "upgrade", "msrdrv-dkms")
    st.fact("upgrade_version", new)
    debs = copy_debs(st.share / "upgrade", LOCAL_UPGRADE)
    before = unit_summary(EXPORTER) + unit_summary(ALLOWLIST)
    o = st.apt("upgrade", "install", *debs, limit=900)
    st.check(f"apt-get install of the next release's .debs ({new}) with both units running", o.rc == 0, o.text)
    state = wait_active(EXPORTER)
    pid1 = prop(EXPORTER, "MainPID")
    served, ev = fetch_metrics(wait=90 if state == "active" else 5)
    st.check(
        "msrctl-exporter active after the upgrade (restarted: new MainPID) and serving",
        state == "active" and pid1.isdigit() and int(pid1) not in (0, pid0) and served,
        f"before the upgrade:\n{before}MainPID before: {pid0}\nafter the upgrade:\n"
        + unit_summary(EXPORTER)
        + ev
        + tail(run("journalctl", "-u", EXPORTER, "-b", "--no-pager", "-n", "12").out, 12),
    )
    st.check(
        "msrdrv-allowlist.service active after the upgrade",
        unit_state(ALLOWLIST) == "active",
        unit_summary(ALLOWLIST) + tail(run("journalctl", "-u", ALLOWLIST, "-b", "--no-pager", "-n", "8").out, 8),
    )
    n, ev = allowlist_entries()
    st.check("the allowlist is still in force after the upgrade", module_loaded() and n > 0, ev)
    ok, ev = dkms_installed_for(kver, new)
    st.check(f"dkms status: msrdrv {new} installed for the running kernel {kver}", ok, ev)

    # The kernel ABI upgrade: the backports kernel and headers, from the image's apt cache.
    o = st.apt(
        "kernel",
        "install",
        "--no-download",
        "-t",
        "bookworm-backports",
        "linux-image-amd64",
        "linux-headers-amd64",
        limit=1500,
    )
    dep = run("dpkg-query", "-W", "-f=${Depends}", "linux-image-amd64").out
    m = re.search(r"linux-image-(\S+-amd64)", dep)
    newk = m.group(1) if m else ""
    st.fact("kernel_installed", newk)
    st.check(
        "the bookworm-backports kernel and headers install offline (apt-get --no-download)",
        o.rc == 0 and bool(newk) and newk != kver and Path(f"/boot/vmlinuz-{newk}").exists(),
        o.text + f"linux-image-amd64 depends: {dep}\nnew kernel: {newk or '?'}\n" + run("ls", "-l", "/boot").text,
    )
    if newk:
        kos = glob.glob(f"/lib/modules/{newk}/updates/dkms/msrdrv.ko*")
        ok, ev = dkms_installed_for(newk, new)
        st.check(f"DKMS built msrdrv {new} for the new kernel {newk}", ok and bool(kos), ev + f"modules: {kos}\n")
        o = run("lsinitramfs", f"/boot/initrd.img-{newk}", timeout=300)
        need = ("virtio_blk.ko", "ext4.ko")
        has = {n: any(line.endswith((n, n + ".xz", n + ".zst")) for line in o.out.splitlines()) for n in need}
        st.check(
            f"the new kernel's initramfs (built in the guest, MODULES=dep) has virtio_blk and ext4 ({newk})",
            o.rc == 0 and all(has.values()),
            f"$ lsinitramfs /boot/initrd.img-{newk}: {len(o.out.splitlines())} files; {has}\n",
        )
    st.attempt("no kernel Oops, BUG or WARNING in dmesg", kernel_trouble)
    return "poweroff"


def new_kernel(st: Stage) -> str:
    """The kernel B2 installed, from its results on the share."""
    try:
        b2 = json.loads((st.results / "B2.json").read_text())
        return str(b2["facts"].get("kernel_installed", ""))
    except (OSError, ValueError, KeyError):
        return ""


def check_new_kernel(st: Stage) -> None:
    want = new_kernel(st)
    have = os.uname().release
    st.check(
        f"running the new kernel ({want or 'unknown: B2 recorded none'})",
        bool(want) and have == want,
        f"uname -r: {have}\ninstalled in B2: {want}\n/proc/cmdline: {st.data['cmdline']}\n",
    )


def lockdown_state() -> str:
    return LOCKDOWN.read_text().strip() if LOCKDOWN.exists() else "(no /sys/kernel/security/lockdown)"


def b3(st: Stage) -> str:
    check_new_kernel(st)
    check_boot_order(st)
    check_exporter(st, "on the new kernel")

    # Runtime lockdown: reads stay allowed, writes are refused.
    ev = ""
    if not LOCKDOWN.exists():
        ev += run("mount", "-t", "securityfs", "securityfs", "/sys/kernel/security").text
    before = lockdown_state()
    o = run("sh", "-c", f"echo integrity > {LOCKDOWN}")
    after = lockdown_state()
    st.fact("lockdown_before", before)
    st.check(
        "lockdown raised to integrity at runtime",
        o.rc == 0 and "[integrity]" in after,
        ev + f"before: {before}\n" + o.text + f"after: {after}\n",
    )
    o = run("msrctl", "read", "0x10")
    st.check("msrctl read 0x10 works under lockdown", o.rc == 0 and bool(o.out.strip()), o.text)
    r = run("msrctl", "read", "0x1a0")
    value = "0x" + r.out.strip() if r.rc == 0 and r.out.strip() else ""
    if value:
        w = run("msrctl", "write", "0x1a0", value)  # its own value: harmless if it went through
        text = w.text + r.text
    else:
        w = run("msrctl", "write", "0x10", "0")  # refused under lockdown; the read above already failed
        text = w.text + r.text
    st.fact("lockdown_write_exit", w.rc)
    st.fact("lockdown_write_message", w.both.strip())
    st.check(
        "an MSR write is refused under lockdown, with a message naming lockdown",
        w.rc != 0 and "lockdown" in w.both.lower(),
        text,
    )
    o = run("msrctl", "status")
    st.fact("status_under_lockdown", o.text)
    st.attempt("no kernel Oops, BUG or WARNING in dmesg", kernel_trouble)
    return "poweroff"


def refused_load(st: Stage, why: str, want: str, want_text: str) -> None:
    """Boot with a restriction that keeps msrdrv out: it is not loaded, and msrctl says why."""
    check_new_kernel(st)
    system_state(st)
    ko = glob.glob(f"/lib/modules/{os.uname().release}/updates/dkms/msrdrv.ko*")
    sig = run("modinfo", "-F", "signer", ko[0]).out.strip() if ko else ""
    mok = sorted(glob.glob("/var/lib/dkms/mok.*"))
    st.fact("module_signer", sig or "(unsigned)")
    st.fact("dkms_mok_files", mok)
    st.check(
        f"msrdrv is not loaded at boot under {why}",
        not module_loaded(),
        f"msrdrv in /proc/modules: {module_loaded()}\n{unit_summary(ALLOWLIST)}module: {ko}\n"
        f"signer: {sig or '(none: unsigned)'}\nDKMS key files: {mok}\n"
        + tail(run("journalctl", "-u", ALLOWLIST, "-b", "--no-pager", "-n", "6").out, 6),
    )
    load = run("msrctl", "load", timeout=120)
    status = run("msrctl", "status", timeout=120)
    dm = dmesg_lines(r"msrdrv|module verification|lockdown|sig|key")
    st.fact("load_exit", load.rc)
    st.fact("load_output", load.both.strip())
    st.fact("status_exit", status.rc)
    st.fact("status_output", status.both.strip())
    st.fact("dmesg", dm.strip())
    st.check(
        f"msrctl load fails under {why}",
        load.rc != 0 and not module_loaded(),
        load.text + "dmesg:\n" + tail(dm, 10),
    )
    st.check(f"msrctl load's message {want_text}", want in load.both.lower(), load.text)
    st.check(f"msrctl status exits nonzero under {why} (module not loaded)", status.rc != 0, status.text)
    st.attempt("no kernel Oops, BUG or WARNING in dmesg", kernel_trouble)


def b4(st: Stage) -> str:
    p = Path("/sys/module/module/parameters/sig_enforce")
    st.check(
        "module.sig_enforce=1 is in force",
        p.exists() and p.read_text().strip() == "Y",
        f"{p}: {p.read_text().strip() if p.exists() else 'missing'}\n",
    )
    refused_load(st, "module.sig_enforce=1", MOK_FIX.lower(), f"names `{MOK_FIX}`")
    # The advice only helps if DKMS made that key and signed the module with it
    # (it needs openssl for the key, which nothing here depends on).
    ko = glob.glob(f"/lib/modules/{os.uname().release}/updates/dkms/msrdrv.ko*")
    signer = run("modinfo", "-F", "signer", ko[0]).out.strip() if ko else ""
    pub = Path("/var/lib/dkms/mok.pub")
    b2log = st.logs / "B2-kernel.log"  # DKMS's build for this kernel, in B2
    text = b2log.read_text(errors="replace") if b2log.exists() else "(no logs/B2-kernel.log)"
    signing = [x for x in text.splitlines() if re.search(r"sign|mok|certif|B2-kernel", x, re.I)]
    st.check(
        "the key msrctl names exists (/var/lib/dkms/mok.pub) and DKMS signed msrdrv with it",
        pub.is_file() and bool(signer),
        f"{pub} exists: {pub.is_file()}\nmodule {ko}: signer {signer or '(none: unsigned)'}\n"
        f"openssl (DKMS makes its key with it): {shutil.which('openssl') or 'not installed'}\n"
        f"mokutil (the command msrctl names): {shutil.which('mokutil') or 'not installed'}\n"
        "DKMS's signing step when it built msrdrv for this kernel (logs/B2-kernel.log):\n" + "\n".join(signing) + "\n",
    )
    return "poweroff"


def b5(st: Stage) -> str:
    state = lockdown_state()
    st.check("lockdown=integrity is in force from the command line", "[integrity]" in state, f"{LOCKDOWN}: {state}\n")
    refused_load(st, "lockdown=integrity", "lockdown", "mentions lockdown")
    return "poweroff"


def b6(st: Stage) -> str:
    check_new_kernel(st)
    pid = check_exporter(st, "before the purge")
    held = holders()
    st.check(
        "the exporter holds /dev/msrdrv open",
        pid > 0 and any(p == pid for p, _ in held),
        f"MainPID {pid}\nholders of {NODE}: {held}\n",
    )
    o = st.apt("purge", "purge", "msrctl", "msrdrv-dkms", limit=600)
    st.check("apt-get purge -y msrctl msrdrv-dkms with the exporter running", o.rc == 0, o.text)
    deadline = time.monotonic() + 20  # a stop that is under way
    while holders() and time.monotonic() < deadline:
        time.sleep(1)
    left = holders()
    alive = pid > 0 and Path(f"/proc/{pid}").exists()
    st.check(
        "no exporter process remains after the purge (nothing holds /dev/msrdrv)",
        not left and not alive,
        f"holders of {NODE}: {left}\nexporter MainPID {pid} still alive: {alive}\n"
        + "".join(line + "\n" for line in run("ps", "-eo", "pid,user,args").out.splitlines() if "exporter" in line),
    )
    units = [
        f"{d}/{u}" for d in ("/usr/lib/systemd/system", "/lib/systemd/system", "/etc/systemd/system") for u in UNITS
    ]
    wants = [w for u in UNITS for w in glob.glob(f"/etc/systemd/system/*.wants/{u}")]
    present = [u for u in units if os.path.lexists(u)]
    st.check("the unit files are gone", not present and not wants, f"present: {present}\nwants links: {wants}\n")
    state = unit_state(EXPORTER)
    st.check(
        "systemctl is-active msrctl-exporter is not active",
        state != "active",
        f"is-active: {state}\n" + unit_summary(EXPORTER),
    )
    o = run("modprobe", "-r", "msrdrv", timeout=60)
    text = o.text
    if module_loaded():
        r = run("rmmod", "msrdrv", timeout=60)
        text += r.text
    gone = not module_loaded()
    how = ("unloaded by modprobe -r" if o.rc == 0 else "unloaded by rmmod") if gone else "still loaded"
    st.check("msrdrv unloads after the purge (modprobe -r, else rmmod)", gone, f"{how}\n{text}")
    o = dkms_status()
    st.check("dkms status shows no msrdrv", "msrdrv" not in o.out, o.text)
    src = glob.glob("/usr/src/msrdrv-*")
    st.check("/usr/src/msrdrv-* is gone", not src, f"{src}\n")
    g = run("getent", "group", GROUP)
    st.fact("msr_group_after_purge", g.out.strip())
    st.check("group msr is kept after the purge (documented policy)", g.rc == 0, g.text)
    st.attempt("no kernel Oops, BUG or WARNING in dmesg", kernel_trouble)
    return "poweroff"


STAGES: dict[str, Callable[[Stage], str]] = {"B1": b1, "B2": b2, "B3": b3, "B4": b4, "B5": b5, "B6": b6}


def main() -> int:
    name, share = sys.argv[1], Path(sys.argv[2])
    st = Stage(name, share)
    action = "poweroff"
    if name not in STAGES:
        st.check(f"stage {name} is known", False, f"known stages: {', '.join(STAGES)}\n")
    else:
        try:
            action = STAGES[name](st)
            st.data["finished"] = True
        except Exception:
            st.check(f"stage {name} ran to its end", False, traceback.format_exc())
    system_state(st)
    st.fact("versions", run("dpkg-query", "-W", "-f=${Package} ${Version}\\n", "msrdrv-dkms", "msrctl").out)
    st.data["action"] = action
    st.save()
    (st.results / f"{name}.action").write_text(action + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
