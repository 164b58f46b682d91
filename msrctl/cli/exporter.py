"""`msrctl exporter`: serve the telemetry as Prometheus metrics over HTTP, one batch per scrape.

The order of the start-up checks gives each mistake its own line and code: the
options (64), the listen socket (69: in use, not this machine's address), the
device (5: msrdrv not loaded) and the allowlist (3: nothing readable), all
before the first scrape can arrive.
"""

import sys
from typing import Optional

import typer


def _note(text: str) -> None:
    sys.stderr.write(f"msrctl: exporter: {text}\n")


def exporter(
    ctx: typer.Context,
    listen: str = typer.Option(
        "127.0.0.1:9838",
        "--listen",
        envvar="MSRCTL_EXPORTER_LISTEN",
        metavar="HOST:PORT",
        help="Address to serve /metrics on: HOST:PORT, [IPV6]:PORT, or :PORT for every interface.",
    ),
    interval: str = typer.Option(
        "1s",
        "-i",
        "--interval",
        envvar="MSRCTL_EXPORTER_INTERVAL",
        metavar="TIME",
        help="Minimum time between hardware reads: a scrape sooner than this after the last read gets its values.",
    ),
    cpus: Optional[str] = typer.Option(None, "-p", "--cpu", metavar="CPUS", help="CPU list (default all online)."),
) -> None:
    """Serve telemetry to Prometheus: joules counters, hertz, celsius and C-state/busy ratios per CPU, core, package.

    Each scrape reads every CPU in one batch (none when the last read is younger than
    --interval).  Metrics this machine lacks are not exported: msrctl_exporter_metric_absent_info
    says why.  Runs until SIGTERM or Ctrl-C (exit 0).  A member of group msr needs the
    telemetry allowlist profile (and the energy profile for joules)."""
    from prometheus_client.core import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    from .._version import __version__
    from ..exporter import families, limits, server
    from ..exporter import listen as listen_mod
    from ..exporter.collector import TelemetryCollector
    from ..telemetry import cpu as cpu_mod
    from ..telemetry import probe, topology
    from ..telemetry.interval import parse_interval
    from ..telemetry.plan import Plan, Reader
    from .record import check_size, open_device, sampled_cpus

    addr = listen_mod.parse(listen)
    interval_ns = parse_interval(interval)
    chosen = sampled_cpus(cpus)
    sock = listen_mod.bind(addr)
    try:
        with open_device(ctx) as dev:
            topo = topology.read(chosen)
            info = cpu_mod.read()
            found = probe.run(dev, info, topo)
            power_limits = limits.run(dev, info, topo)  # the permission error came first, from probe
            plan = Plan(topo, (*found.sampled, *power_limits.registers), found.context)
            check_size(dev, len(plan), plan.per_cpu(), _note)
            registry = CollectorRegistry()
            collector = TelemetryCollector(
                plan, Reader(dev, plan), dev.backend, interval_ns / 1e9, __version__, limits=power_limits
            )
            registry.register(collector)
            ProcessCollector(registry=registry)  # process_cpu_seconds_total: what the exporter costs
            _note(
                f"serving {addr.url()}: {len(topo.cpus)} CPUs, {len(plan)} ops per read, backend {dev.backend}, "
                f"reads at most every {interval}"
            )
            absent: dict[str, list[str]] = {}
            for name, why in [*families.absent(plan.context), *power_limits.absent_reasons()]:
                absent.setdefault(why, []).append(name)
            for why, names in absent.items():
                _note(f"not exported ({why}): {', '.join(names)}")
            signum = server.serve(sock, registry)
            _note(f"stopped by signal {signum}")
    finally:
        sock.close()
