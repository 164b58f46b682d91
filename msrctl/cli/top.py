"""`msrctl top`: a live view of the telemetry, a row per package (package and DRAM watts,
temperature, C-states) and per CPU (MHz, busy %, core C-states and temperature),
redrawn every interval until q, Ctrl-C or -n refreshes; when stdout is not a
terminal, one frame per interval on stdout instead (like `top -b`).

The numbers are derive()'s, laid out by msrctl.telemetry.table; the terminal is
msrctl.cli.terminal's.  Sampling is `record`'s: the same probe, plan and sampler.
"""

import os
import sys
from typing import Any, Optional

import typer

from ..errors import MsrctlError

BACKENDS = {"msrdrv": "msrdrv", "msr": "msr (the kernel's msr driver)"}


def _note(text: str) -> None:
    sys.stderr.write(f"msrctl: top: {text}\n")


def top(
    ctx: typer.Context,
    interval: str = typer.Option("1s", "-i", "--interval", metavar="TIME", help="Refresh interval: 200ms, 1s, 2m."),
    count: Optional[int] = typer.Option(None, "-n", "--count", metavar="N", min=1, help="Quit after N refreshes."),
    cpus: Optional[str] = typer.Option(None, "-p", "--cpu", metavar="CPUS", help="CPU list (default all online)."),
    all_columns: bool = typer.Option(
        False, "--all-columns", help="A column for every metric, '-' under those this machine lacks."
    ),
) -> None:
    """Live telemetry, redrawn every interval: package and DRAM watts, temperatures, C-states, MHz, busy %.

    q or Ctrl-C quits.  Only the metrics this machine has get a column (--all-columns:
    every one, '-' under the absent); the reasons for the others are under the tables.
    When stdout is not a terminal, prints a frame per interval instead (like `top -b`)
    until -n frames, Ctrl-C or SIGTERM."""
    from ..telemetry import cpu as cpu_mod
    from ..telemetry import probe, table, topology
    from ..telemetry.interval import parse_interval
    from ..telemetry.plan import Plan, Reader
    from . import terminal
    from .record import check_size, open_device, sampled_cpus

    interval_ns = parse_interval(interval)
    chosen = sampled_cpus(cpus)
    info = cpu_mod.read()
    with open_device(ctx) as dev:
        topo = topology.read(chosen)
        found = probe.run(dev, info, topo)  # the permission error comes here, before the screen is taken
        plan = Plan(topo, found.sampled, found.context)
        check_size(dev, len(plan), plan.per_cpu(), _note)
        interactive = sys.stdout.isatty()
        view: Any = terminal.Screen() if interactive else terminal.Frames(sys.stdout)
        keys = "q or Ctrl-C quits" if interactive and view.keys else "Ctrl-C quits" if interactive else ""
        header = table.Header(
            os.uname().nodename,
            info.model_name or info.describe(),
            BACKENDS.get(dev.backend, dev.backend),
            interval_ns,
            info.has("hypervisor"),
            keys,
            tuple(f"package {p} TEMP C from the {s.what}" for p, s in found.context.sensors.items()),
        )
        with view:
            _loop(plan, Reader(dev, plan), header, count, view, all_columns)


def _loop(plan: Any, take: Any, header: Any, count: Optional[int], view: Any, all_columns: bool = False) -> None:
    """Sample and draw until quit (q, a signal) or count frames."""
    from ..device.msrdrv import MsrError
    from ..telemetry import table
    from ..telemetry.derive import derive
    from ..telemetry.sampler import Sampler

    metrics = plan.context.metrics
    shown: dict[str, Any] = {"sample": None, "status": None}

    def draw() -> None:
        width, height = view.size()
        view.draw(table.render(header, metrics, shown["sample"], shown["status"], width, height, all_columns))

    def wait(seconds: float) -> None:
        view.wait(seconds)
        if view.quit:
            sampler.stop()
        if view.resized:
            view.resized = False
            draw()

    sampler = Sampler(take, header.interval_ns, wait=wait)
    prev = t0 = None
    frames = 0
    try:
        for tick in sampler:
            if tick.final:  # the sampler's closing sample after a quit: nothing to show
                break
            if prev is None:
                t0 = tick.value.t_ns
                if view.interactive:
                    draw()  # the header at once; values after one interval
            else:
                st = sampler.stats
                shown["sample"] = derive(plan, prev, tick.value)
                shown["status"] = table.Status(tick.index, (tick.value.t_ns - t0) / 1e9, st.late, st.missed)
                draw()
                frames += 1
                if count is not None and frames >= count:
                    break
            prev = tick.value
            wait(0)  # keys and resizes, even when sampling is behind and never sleeps
            if view.quit:
                break
    except MsrError as e:
        raise MsrctlError("sampling stopped", str(e), "see `msrctl status`") from None
