#!/usr/bin/env python3
"""Full-system test of the Debian packages: a real Debian 12 with systemd as PID 1, booted once per stage.

The image (tests/system/image.sh, cached) is copied for this run; QEMU (TCG)
boots it directly from the kernel and initramfs in the image's own /boot, the
newest there; the test agent in the image runs the stage this script names on
a 9p share (tests/system/guest/stages.py) and powers off or reboots (QEMU
runs with -no-reboot, so a reboot ends the boot as well and the next stage
boots the same disk).  Checks, facts and logs come back through the share.

    tests/system/run.py [--debs DIR] [--upgrade-debs DIR] [--stages B1,B2,...]

    SYSTEM_DEBS, SYSTEM_UPGRADE_DEBS   the .debs under test and the next
        release's (default build/deb, build/deb-upgrade); the options win
    SYSTEM_TIMEOUT_SCALE   multiplies every boot's time limit (default 1)

Writes build/system/ (the disk copy, serial logs, the share with the guest's
logs, results.json) and tests/system/results.md.  Closing line
'system: N passed, N failed'; exit 1 if a check failed, a boot ran out of
time or a stage produced no results.  Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "system"
SHARE = OUT / "share"
RESULTS_MD = REPO / "tests" / "system" / "results.md"
TAG = "systemtest"  # the agent mounts this 9p tag
PACKAGES = ("msrdrv-dkms", "msrctl")
SCALE = float(os.environ.get("SYSTEM_TIMEOUT_SCALE", "1"))

# stage: (what it does, extra kernel command line, time limit in s).  The
# limits are 3 to 8 times the times seen on the 2-core TCG host with two other
# guests running (B1 190 s: one DKMS build; B2 670 s: the upgrade's build, the
# new kernel's initramfs and build; B3-B5 65-85 s; B6 245 s: the purge's two
# DKMS removals).
STAGES: dict[str, tuple[str, str, int]] = {
    "B1": ("bookworm kernel: install, DKMS, access, units", "", 1200),
    "B2": ("after reboot: boot order, package upgrade, kernel ABI upgrade", "", 2400),
    "B3": ("new kernel: boot order, runtime lockdown", "", 600),
    "B4": ("new kernel, module.sig_enforce=1", "module.sig_enforce=1", 600),
    "B5": ("new kernel, lockdown=integrity", "lockdown=integrity", 600),
    "B6": ("new kernel: purge with everything running", "", 900),
}
IMAGE_LIMIT = 3600  # the first build: debootstrap and about 400 MB from the mirror (97 s here)
BASE_APPEND = "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=1"


def log(msg: str) -> None:
    print(f"system: {msg}", file=sys.stderr, flush=True)


def one_deb(directory: Path, pkg: str) -> Path:
    found = sorted(directory.glob(f"{pkg}_*.deb"))
    if len(found) != 1:
        sys.exit(f"system: want exactly one {pkg}_*.deb in {directory}, found {[p.name for p in found]}")
    return found[0]


def deb_version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def build_image(debs: Path, upgrade: Path) -> tuple[Path, bool, float]:
    """The cached image's directory, whether this run built it, and how long that took (or once took)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [str(REPO / "tests/system/image.sh"), str(debs), str(upgrade)],
            stdout=subprocess.PIPE,
            text=True,
            timeout=IMAGE_LIMIT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        sys.exit(
            f"system: the image build did not finish in {IMAGE_LIMIT} s (log: /var/cache/msrdrv-system/*.tmp/build.log)"
        )
    if p.returncode != 0:
        sys.exit(f"system: the image build failed (exit {p.returncode}; messages above)")
    how, path = p.stdout.strip().splitlines()[-1].split(" ", 1)
    image = Path(path)
    took = time.monotonic() - t0 if how == "built" else float((image / "build-seconds").read_text())
    return image, how == "built", round(took, 1)


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value.strip('"')
    return env


def version_key(name: str) -> list[tuple[int, str]]:
    """Orders kernel file names like sort -V: 6.1.0-57 < 6.12.95."""
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", name)]


def newest_kernel(disk: Path, into: Path) -> tuple[str, Path, Path]:
    """The newest vmlinuz in the disk image's /boot and its initrd, copied out with debugfs (no loop mount)."""
    ls = subprocess.run(["debugfs", "-R", "ls -p /boot", str(disk)], capture_output=True, text=True, check=True)
    names = [f.split("/")[5] for f in ls.stdout.splitlines() if f.count("/") >= 6]
    kernels = sorted((n[len("vmlinuz-") :] for n in names if n.startswith("vmlinuz-")), key=version_key)
    if not kernels:
        raise RuntimeError(f"no /boot/vmlinuz-* in {disk}: {names}")
    kver = kernels[-1]
    if f"initrd.img-{kver}" not in names:
        raise RuntimeError(f"{disk} has /boot/vmlinuz-{kver} but no initrd.img-{kver}")
    into.mkdir(parents=True, exist_ok=True)
    files = []
    for name in (f"vmlinuz-{kver}", f"initrd.img-{kver}"):
        dst = into / name
        dst.unlink(missing_ok=True)
        subprocess.run(["debugfs", "-R", f"dump /boot/{name} {dst}", str(disk)], capture_output=True, check=True)
        if not dst.is_file() or dst.stat().st_size == 0:
            raise RuntimeError(f"debugfs could not copy /boot/{name} out of {disk}")
        files.append(dst)
    return kver, files[0], files[1]


def qemu_argv(disk: Path, vmlinuz: Path, initrd: Path, append: str, serial: Path) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-machine", "q35",
        "-accel", "tcg",
        "-cpu", "max",  # as virtme-ng under TCG (make test-guest): the MSRs the module's tests use
        "-smp", "2",
        "-m", "2048",
        "-nic", "none",
        "-display", "none",
        "-monitor", "none",
        "-no-reboot",
        "-serial", f"file:{serial}",
        "-drive", f"file={disk},if=virtio,format=raw",
        "-virtfs", f"local,path={SHARE},mount_tag={TAG},security_model=none",
        "-kernel", str(vmlinuz),
        "-initrd", str(initrd),
        "-append", append,
    ]  # fmt: skip


def boot(n: int, stage: str, disk: Path) -> dict[str, object]:
    """Boot n: the stage's checks from the guest, and a failed one of ours if it ran out of time or said nothing."""
    what, extra, limit = STAGES[stage]
    limit = int(limit * SCALE)
    kver, vmlinuz, initrd = newest_kernel(disk, OUT / "kernel")
    append = f"{BASE_APPEND} {extra}".strip()
    serial = OUT / f"boot{n}.serial"
    name = f"boot {n} ({stage}, kernel {kver}{', ' + extra if extra else ''})"
    (SHARE / "stage").write_text(stage + "\n")
    for leftover in (SHARE / "results").glob(f"{stage}.*"):
        leftover.unlink()
    log(f"{name}: {what}; limit {limit} s; serial log {serial.relative_to(REPO)}")
    t0 = time.monotonic()
    with (OUT / f"boot{n}.qemu.log").open("w") as qlog:
        proc = subprocess.Popen(qemu_argv(disk, vmlinuz, initrd, append, serial), stdout=qlog, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            timed_out = True
    took = round(time.monotonic() - t0, 1)
    result: dict[str, object] = {
        "boot": n,
        "stage": stage,
        "what": what,
        "kernel_booted": kver,
        "append": append,
        "duration_s": took,
        "limit_s": limit,
        "timed_out": timed_out,
        "qemu_exit": rc,
        "serial_log": str(serial.relative_to(REPO)),
    }
    checks: list[dict[str, object]] = []
    path = SHARE / "results" / f"{stage}.json"
    if path.exists():
        guest = json.loads(path.read_text())
        checks = list(guest.pop("checks"))
        result["guest"] = guest
    if timed_out:
        checks.append(
            {
                "name": f"{name} finished in time",
                "ok": False,
                "evidence": f"{name} did not finish in {limit} s; serial log: {serial.relative_to(REPO)}\n",
            }
        )
    if not path.exists():
        checks.append(
            {
                "name": f"stage {stage} produced results",
                "ok": False,
                "evidence": f"{name}: no {path.relative_to(REPO)} (QEMU exit {rc}); serial log: "
                f"{serial.relative_to(REPO)}\n"
                + "".join(
                    serial.read_text(errors="replace").splitlines(keepends=True)[-15:] if serial.exists() else ""
                ),
            }
        )
    elif not result["guest"].get("finished") and not timed_out:  # type: ignore[union-attr]
        checks.append(
            {
                "name": f"stage {stage} ran to its end",
                "ok": False,
                "evidence": f"{name}: the stage stopped early (QEMU exit {rc}); "
                f"serial log: {serial.relative_to(REPO)}\n",
            }
        )
    result["checks"] = checks
    passed = sum(1 for c in checks if c["ok"])
    log(f"{name}: {took:.0f} s, {passed} passed, {len(checks) - passed} failed")
    for c in checks:
        log(f"  {'PASS' if c['ok'] else 'FAIL'}  {c['name']}")
    return result


def excerpt(text: str, limit: int = 260) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    s = " · ".join(lines[:4])
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("|", "\\|").replace("\n", " ")


def write_markdown(report: dict[str, object]) -> None:
    boots = report["boots"]
    assert isinstance(boots, list)
    pk = report["packages"]
    img = report["image"]
    assert isinstance(pk, dict) and isinstance(img, dict)
    out = [
        "# System test results",
        "",
        f"Written by `make test-system` (tests/system/run.py) on {report['date']}; rewritten by every run.",
        "A Debian 12 machine with systemd as PID 1 under QEMU TCG (2 vCPUs, 2 GiB, no network),",
        "booted once per stage from the kernel in its own /boot. Evidence in full: build/system/results.json,",
        "the guest's logs (journal, dmesg, apt) in build/system/share/logs/, serial logs in build/system/.",
        "",
        f"- **Result: {report['passed']} passed, {report['failed']} failed**; total {report['total_s']:.0f} s",
        f"- Packages under test: {pk['test']} (from {pk['test_dir']})",
        f"- Upgrade packages: {pk['upgrade']} (from {pk['upgrade_dir']})",
        f"- Image: {'built by this run' if img['built'] else 'cached'}, build time {img['build_s']:.0f} s "
        f"({img['dir']}); kernels {img['kver']} (bookworm) and {img['new_kver']} (bookworm-backports)",
        f"- Image packages besides Debian's minbase: {img['packages']}",
        f"- Declared dependencies of the .debs (installed in the image): {img['declared']}",
        "",
        "| Boot | Stage | Kernel | Extra command line | Duration | Checks |",
        "|---|---|---|---|---|---|",
    ]
    for b in boots:
        checks = b["checks"]
        ok = sum(1 for c in checks if c["ok"])
        status = "TIMED OUT" if b.get("timed_out") else ("not run" if b.get("not_run") else f"{b['duration_s']:.0f} s")
        extra = b.get("append", "").replace(BASE_APPEND, "").strip() or "-"
        out.append(
            f"| {b['boot']} | {b['stage']} | {b.get('kernel_booted', '-')} | {extra} | {status} | "
            f"{ok} passed, {len(checks) - ok} failed |"
        )
    for b in boots:
        out += ["", f"## Boot {b['boot']}: {b['stage']}, {b['what']}", ""]
        guest = b.get("guest") or {}
        facts = guest.get("facts", {}) if isinstance(guest, dict) else {}
        if guest:
            out.append(f"Kernel `{guest.get('kernel')}`, command line `{guest.get('cmdline')}`.")
            out.append("")
        out += ["| Check | Result | Evidence (excerpt) |", "|---|---|---|"]
        for c in b["checks"]:
            out.append(f"| {c['name']} | {'PASS' if c['ok'] else '**FAIL**'} | {excerpt(c['evidence'])} |")
        keep = {k: v for k, v in facts.items() if k not in ("versions", "status_under_lockdown", "dmesg")}
        if keep:
            out += ["", "Facts: " + "; ".join(f"{k} = `{excerpt(str(v), 200)}`" for k, v in keep.items())]
    RESULTS_MD.write_text("\n".join(out) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", type=Path, default=Path(os.environ.get("SYSTEM_DEBS", REPO / "build/deb")))
    ap.add_argument(
        "--upgrade-debs", type=Path, default=Path(os.environ.get("SYSTEM_UPGRADE_DEBS", REPO / "build/deb-upgrade"))
    )
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in order (default all)")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="development: boot the disk and share of the last run as they are (e.g. --stages B3 after a B2)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("system: needs root (debootstrap and chroot for the image)")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        sys.exit(f"system: unknown stages {unknown}; known: {', '.join(STAGES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    lock = (OUT / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one run at a time: they share build/system and the cache
    except BlockingIOError:
        sys.exit(f"system: another run holds {OUT / '.lock'}")
    debs = {p: one_deb(args.debs.resolve(), p) for p in PACKAGES}
    upgrade = {p: one_deb(args.upgrade_debs.resolve(), p) for p in PACKAGES}
    t0 = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    image, built, build_s = build_image(args.debs.resolve(), args.upgrade_debs.resolve())
    env = read_env(image / "image.env")
    log(f"image {image} ({'built' if built else 'cached'}; build time {build_s:.0f} s)")

    # This run's disk and share; the cached image stays clean.
    disk = OUT / "disk.raw"
    if not (args.resume and disk.exists()):
        for old in ("disk.raw", "share", "kernel"):
            shutil.rmtree(OUT / old) if (OUT / old).is_dir() else (OUT / old).unlink(missing_ok=True)
        for old in OUT.glob("boot*.*"):
            old.unlink()
        OUT.mkdir(parents=True, exist_ok=True)
        t1 = time.monotonic()
        subprocess.run(["cp", "--sparse=always", str(image / "disk.raw"), str(disk)], check=True)
        log(f"disk copied in {time.monotonic() - t1:.0f} s")
        for sub in ("guest", "debs", "upgrade", "results", "logs"):
            (SHARE / sub).mkdir(parents=True)
        for p in PACKAGES:
            shutil.copy(debs[p], SHARE / "debs")
            shutil.copy(upgrade[p], SHARE / "upgrade")
    shutil.copy(REPO / "tests/system/guest/stages.py", SHARE / "guest")
    shutil.copy(REPO / "tests/vm.py", SHARE / "guest")  # stages.py takes the suite's dmesg rule from it

    boots: list[dict[str, object]] = []
    stopped = ""
    for stage in stages:
        n = list(STAGES).index(stage) + 1  # boot 3 is always B3, also with --resume
        if stopped:
            boots.append(
                {
                    "boot": n,
                    "stage": stage,
                    "what": STAGES[stage][0],
                    "not_run": True,
                    "duration_s": 0,
                    "checks": [{"name": f"stage {stage} produced results", "ok": False, "evidence": stopped}],
                }
            )
            continue
        try:
            b = boot(n, stage, disk)
        except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
            b = {"boot": n, "stage": stage, "what": STAGES[stage][0], "duration_s": 0,
                 "checks": [{"name": f"boot {n} ({stage}) started", "ok": False, "evidence": f"{e}\n"}]}  # fmt: skip
        boots.append(b)
        if b.get("timed_out"):
            stopped = f"not run: boot {n} ({stage}) ran out of time, the disk may be half-written\n"

    checks = [c for b in boots for c in b["checks"]]  # type: ignore[union-attr]
    passed = sum(1 for c in checks if c["ok"])
    failed = len(checks) - passed
    report: dict[str, object] = {
        "date": date,
        "total_s": round(time.monotonic() - t0, 1),
        "passed": passed,
        "failed": failed,
        "packages": {
            "test": ", ".join(f"{p} {deb_version(d)}" for p, d in debs.items()),
            "test_dir": str(args.debs),
            "upgrade": ", ".join(f"{p} {deb_version(d)}" for p, d in upgrade.items()),
            "upgrade_dir": str(args.upgrade_debs),
        },
        "image": {
            "dir": str(image),
            "built": built,
            "build_s": build_s,
            "kver": env.get("KVER", "?"),
            "new_kver": env.get("NEW_KVER", "?"),
            "packages": env.get("PACKAGES", "?"),
            "declared": env.get("DECLARED", "?"),
        },
        "boots": boots,
    }
    (OUT / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report)
    log(f"results: {RESULTS_MD.relative_to(REPO)}, {(OUT / 'results.json').relative_to(REPO)}")
    log(
        "times: image "
        + ("built" if built else "cached")
        + f" {build_s:.0f} s; "
        + "; ".join(f"boot {b['boot']} {b['stage']} {b['duration_s']:.0f} s" for b in boots)
        + f"; total {report['total_s']:.0f} s"
    )
    print(f"system: {passed} passed, {failed} failed")
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
