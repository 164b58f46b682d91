"""`msrctl stat`: count performance events while a command runs, pinned to one CPU."""

from typing import Any

import typer

from .. import errors
from ..errors import MsrctlError, UsageError


def _table(res: dict[str, Any], wall: float, command: list[str]) -> str:
    lines = [f" Performance counters for '{' '.join(command)}' on CPU {res['cpu']} ({res['pmu']}):", ""]
    for e in res["events"]:
        lines.append(f"  {e['count']:>18,}  {e['event']:<16} ({e['counter']}, overhead {e['overhead']:,} subtracted)")
    lines += ["", f"  {res['tsc_cycles']:>18,}  TSC cycles", f"  {wall:>18.6f}  seconds elapsed", ""]
    return "\n".join(lines)


def stat(
    ctx: typer.Context,
    command: list[str] = typer.Argument(..., metavar="-- COMMAND [ARGS]...", help="The command to measure."),  # noqa: B008 (typer idiom)
    event_list: str = typer.Option(
        "cycles,instructions", "-e", "--events", metavar="EVENTS", help="Events: names or raw event:umask."
    ),
    cpu: int = typer.Option(
        0, "-p", "--cpu", metavar="CPU", min=0, help="Run the command on this CPU and count there."
    ),
    kernel: bool = typer.Option(False, "--kernel", help="Count kernel mode too (default: user mode only)."),
    force: bool = typer.Option(False, "--force", help="Use counters even if perf or the NMI watchdog enabled them."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
    output: str = typer.Option("-", "-o", "--output", metavar="FILE", help="Write the report here (default stderr)."),
) -> None:
    """Count events (cycles, instructions, ...) while COMMAND runs pinned to one CPU; exits with its status."""
    import json
    import os
    import subprocess
    import sys
    import time
    import warnings
    from dataclasses import replace

    from ..admin import diagnose
    from ..device.cpus import online_cpus
    from ..perf import events as ev_mod
    from ..perf import pmu as pmu_mod
    from ..perf.region import PmuError, Region
    from .allowlist import _open

    online = online_cpus()
    if cpu not in online:  # before the PMU: a wrong CPU is the user's to fix, whatever the PMU
        raise diagnose.no_such_cpu(cpu, online, "choose an online CPU with -p")
    pmu = pmu_mod.detect(cpu)
    if not pmu.present:
        raise MsrctlError(
            "cannot count events",
            pmu.reason,
            "run on hardware with a PMU, or in a VM whose hypervisor exposes a virtual PMU",
            errors.NO_PMU,
        )
    events = ev_mod.parse(event_list, pmu.vendor)
    if kernel:
        events = [replace(e, kernel=True) for e in events]
    with _open(ctx, feature="counting events") as dev, warnings.catch_warnings(record=True) as caught:
        if any(e.kernel for e in events) and not dev.info().rawio:
            # The kernel would silently drop the OS bit from the event selects: refuse instead.
            raise MsrctlError(
                "cannot count kernel mode",
                "group members may count user mode only (no allowlist grants the OS bit)",
                "leave out --kernel and :os, or run it as root",
                errors.PERMISSION,
            )
        warnings.simplefilter("always")
        try:
            region = Region(dev, events, cpu=cpu, pmu=pmu, force=force)
        except PmuError as e:
            raise MsrctlError("cannot count events", str(e), "use fewer events, or --force", errors.NO_PMU) from None
        for w in caught:
            sys.stderr.write(f"msrctl: warning: {w.message}\n")
        t0 = time.perf_counter()
        try:
            with region:
                proc = subprocess.run(command, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}), check=False)
        except FileNotFoundError:
            raise UsageError(f"cannot run '{command[0]}'", "no such command", "check the name and PATH") from None
        wall = time.perf_counter() - t0
    res = region.result()
    res.update(command=command, seconds=wall, exit_status=proc.returncode)
    text = json.dumps(res, indent=2) + "\n" if as_json else _table(res, wall, command)
    from .textout import emit

    emit(text, output, stream="stderr")  # stdout stays the command's own
    raise typer.Exit(proc.returncode)
