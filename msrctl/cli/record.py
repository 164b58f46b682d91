"""`msrctl record`: sample telemetry in physical units to CSV or JSON Lines, for N samples,
while a command runs, or until interrupted; a summary on stderr at the end."""

import os
import signal
import sys
from typing import Any, Optional

import typer

from .. import errors
from ..errors import MsrctlError, UsageError


def open_device(ctx: typer.Context) -> Any:
    """The device samples are read through (msrdrv, or the stock msr driver: --backend);
    reads need no write access."""
    from ..admin.execute import open_device as open_checked

    return open_checked(str(ctx.find_root().obj), write=False)


def _note(text: str) -> None:
    sys.stderr.write(f"msrctl: record: {text}\n")


class _Waker:
    """The sampler's wait: sleeps until the next deadline, a signal, or the command's exit.

    SIGINT and SIGTERM only ask the sampler to stop (a final sample and the summary follow);
    SIGCHLD wakes the wait so the command's exit ends sampling at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stop: Any = None
        self.proc: Any = None
        self.old_fd = signal.set_wakeup_fd(self.w)
        self.old = {s: signal.getsignal(s) for s in self.SIGNALS}
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, lambda *_: self.stop and self.stop())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it

    def wait(self, seconds: float) -> None:
        import select

        if self.proc is None or self.proc.poll() is None:
            select.select([self.r], [], [], seconds)
            try:
                while os.read(self.r, 512):
                    pass
            except BlockingIOError:
                pass
        if self.proc is not None and self.proc.poll() is not None and self.stop:
            self.stop()

    def close(self) -> None:
        signal.set_wakeup_fd(self.old_fd)
        for s, h in self.old.items():
            signal.signal(s, h)
        os.close(self.r)
        os.close(self.w)


def sampled_cpus(text: Optional[str]) -> "list[int]":
    from ..admin import diagnose
    from ..device.cpus import online_cpus
    from ..registers.parse import parse_cpus

    online = online_cpus()
    if text is None:
        return online
    chosen = parse_cpus(text)
    for c in chosen:
        if c not in online:
            raise diagnose.no_such_cpu(c, online, "choose online CPUs with -p")
    return chosen


def check_size(dev: Any, nops: int, per_cpu: int, note: Any = _note) -> None:
    from ..telemetry.probe import device_info

    info = device_info(dev)
    if info is None:
        return
    if nops > info.max_ops:
        limit = "max_ops" if info.rawio else "max_ops_user, for openers without CAP_SYS_RAWIO"
        raise MsrctlError(
            f"cannot sample in one batch: a sample needs {nops} ops",
            f"msrdrv takes at most {info.max_ops} per call ({limit})",
            "sample fewer CPUs with -p, or have the admin raise the limit (msrctl generate modprobe --max-ops-user N)",
            errors.USAGE,
        )
    if per_cpu > info.section_ops:
        note(
            f"a CPU runs {per_cpu} ops per sample, over section_ops={info.section_ops}: "
            "its registers are not read in one interrupts-off section"
        )


def record(
    ctx: typer.Context,
    command: Optional[list[str]] = typer.Argument(  # noqa: B008 (typer idiom)
        None, metavar="-- COMMAND", help="Sample while this command (and its arguments) runs; exit with its status."
    ),
    interval: str = typer.Option("1s", "-i", "--interval", metavar="TIME", help="Sampling interval: 100ms, 1s, 2m."),
    count: Optional[int] = typer.Option(None, "-n", "--count", metavar="N", min=1, help="Stop after N samples."),
    output: str = typer.Option("-", "-o", "--output", metavar="FILE", help="Write samples here (default stdout)."),
    fmt: str = typer.Option("csv", "--format", metavar="FORMAT", help="csv (a row per CPU, core, package) or jsonl."),
    cpus: Optional[str] = typer.Option(None, "-p", "--cpu", metavar="CPUS", help="CPU list (default all online)."),
    all_columns: bool = typer.Option(
        False,
        "--all-columns",
        help="Write every metric msrctl knows, those this machine lacks as empty cells (JSON null): "
        "the same columns on every machine.  By default only the metrics this machine has.",
    ),
    kernel_timer: bool = typer.Option(
        False,
        "--kernel-timer",
        help="Sample from msrdrv's per-CPU kernel timers (docs/sampler.md) instead of a user-space loop; "
        "same columns.  Needs msrdrv 0.3+; the interval is at least its sampler_min_period_ns(_user).",
    ),
) -> None:
    """Record telemetry in watts, joules, MHz, degrees C and percent: one batch per sample for all CPUs.

    Stops after -n samples, when COMMAND exits, or on Ctrl-C; the summary (samples, late and
    missed intervals, energy) goes to stderr.  Only the metrics this machine has are
    written (--all-columns: all, the absent ones empty); each absent one is named once at
    the start, with its reason.  With --kernel-timer the kernel
    reads the registers on every CPU at each tick and msrctl reads the records in batches."""
    from ..telemetry import cpu as cpu_mod
    from ..telemetry import formats, ksource, probe, topology
    from ..telemetry.interval import parse_interval
    from ..telemetry.plan import Plan, Reader

    interval_ns = parse_interval(interval)
    if fmt not in ("csv", "jsonl"):
        raise UsageError(f"unknown format '{fmt}'", "it is csv or jsonl", "e.g. --format jsonl")
    if count is not None and command:
        raise UsageError("-n and COMMAND conflict", "sampling stops after N samples or when COMMAND exits", "give one")
    chosen = sampled_cpus(cpus)
    with open_device(ctx) as dev:
        if kernel_timer:
            ksource.require(dev, interval_ns)
        topo = topology.read(chosen)
        found = probe.run(dev, cpu_mod.read(), topo)
        plan = Plan(topo, found.sampled, found.context)
        if not kernel_timer:  # the kernel sampler's op set has its own limit (start explains it)
            check_size(dev, len(plan), plan.per_cpu())
        for line in formats.start_lines(plan, found.absent(), interval_ns, all_columns):
            _note(line)
        note = formats.wrap_note(plan, interval_ns)
        if note:
            _note(f"warning: {note}")
        out = _open_output(output)
        kernel = None
        try:
            if kernel_timer:
                kernel = ksource.start(dev, plan, interval_ns)
                _note(f"kernel timer: msrdrv reads {kernel[0].header.nops} ops on each CPU at every tick")
                ticks = _kernel_loop(plan, kernel, interval_ns)
            else:
                ticks = _user_loop(Reader(dev, plan), interval_ns)
            status = _loop(plan, ticks, interval_ns, count, command, (fmt, formats.shown(plan, all_columns)), out)
        finally:
            if kernel is not None:
                kernel[0].close()
            if out is not sys.stdout:
                out.close()
    raise typer.Exit(status)


def _open_output(path: str) -> Any:
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")  # closed by record()
    except OSError as e:
        raise MsrctlError(f"cannot write {path}", e.strerror or str(e), "check the path and permissions") from None


def _user_loop(take: Any, interval_ns: int) -> Any:
    """The ticks of the user-space loop: one batch submitted per interval."""
    from ..telemetry.sampler import Sampler

    return lambda waker: Sampler(take, interval_ns, wait=waker.wait)


def _kernel_loop(plan: Any, kernel: Any, interval_ns: int) -> Any:
    """The ticks of a running kernel sampler (ksource.start's sampler and first tick time)."""
    from ..telemetry.ksource import KernelSource

    return lambda waker: KernelSource(plan, kernel[0], interval_ns, kernel[1], idle=lambda: waker.wait(0))


def _loop(plan: Any, ticks: Any, interval_ns: int, count: Optional[int], command: Any, layout: Any, out: Any) -> int:
    """Sample until done; returns the exit status (the command's, if one ran).  layout:
    (the format, the metrics written)."""
    import subprocess

    from ..device.msrdrv import MsrError
    from ..telemetry import formats
    from ..telemetry.derive import derive
    from ..telemetry.totals import Totals

    fmt, names = layout
    hybrid = plan.topology.hybrid
    waker = _Waker()
    sampler = ticks(waker)
    waker.stop = sampler.stop
    totals = Totals()
    proc = None
    prev = t0 = None
    misses_told = 0
    failure: Optional[MsrctlError] = None
    try:
        if fmt == "csv":
            out.write(formats.csv_header(hybrid, names))
        for tick in sampler:
            if prev is None:
                t0 = tick.value.t_ns
                if command:
                    try:
                        proc = waker.proc = subprocess.Popen(command)
                    except OSError as e:
                        raise UsageError(
                            f"cannot run '{command[0]}'", e.strerror or str(e), "check the name and PATH"
                        ) from None
            else:
                sample = derive(plan, prev, tick.value)
                totals.add(sample)
                if fmt == "csv":
                    out.write(formats.csv_rows(sample, tick.index, t0, hybrid, names))
                else:
                    out.write(formats.jsonl(sample, tick.index, t0, tick.late_ns, tick.missed, tick.final, names))
                out.flush()
                if tick.missed and misses_told < 5:
                    misses_told += 1
                    _note(f"warning: missed {tick.missed} interval(s) before sample {tick.index}: the system was busy")
                if count is not None and totals.samples >= count:
                    break
            prev = tick.value
    except MsrError as e:
        failure = MsrctlError("sampling stopped", str(e), "see `msrctl status`")
    finally:
        waker.close()
    packages = [c.package for c in plan.topology.packages()]
    for line in formats.summary_lines(totals, sampler.stats, packages, interval_ns):
        _note(line)
    if hasattr(sampler, "ring_counts"):
        dropped, skipped, throttled = sampler.ring_counts()
        _note(
            f"kernel sampler: {dropped} records dropped (ring full), {skipped} ticks skipped by the timer, "
            f"{throttled} throttled (interrupt budget)"
        )
        if throttled:
            _note(
                "throttled: the samplers on a CPU reached their share of it (module parameters "
                "sampler_cpu_pct, sampler_cpu_pct_user without CAP_SYS_RAWIO; each interrupt is charged "
                "sampler_irq_ns): sample less often or fewer registers, or ask root to raise the share"
            )
    if failure is not None:
        if proc is not None:
            proc.wait()
        raise failure
    if proc is None:
        return 0
    code = proc.wait()
    return 128 - code if code < 0 else code
