"""The prometheus_client collector: one hardware read (one batch for every CPU) per scrape,
the families of its sample, cumulative energy counters, and the exporter's own health.

A scrape reads the hardware unless the previous read is younger than the minimum
interval (--interval), in which case it serves that read's values again: two
Prometheus servers scraping the same node then cost one batch, and the ratios
and frequencies cover at least that long.  The first read is taken at start-up;
a scrape with no values yet (the first, or after a failed batch) always reads,
so it never comes back empty while the hardware answers.  Energy counters start
at 0 when the exporter starts and only grow: each read adds the joules derive()
computed for its interval (the 32-bit RAPL wrap handled there).
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..device.msrdrv import MsrError
from ..telemetry.derive import Sample, derive
from ..telemetry.plan import Plan, Raw
from . import families, limits
from .families import Key
from .limits import Limits

HEALTH = "msrctl_exporter"


def errno_name(err: int) -> str:
    return errno.errorcode.get(err, str(err))


class TelemetryCollector(Collector):
    """Collects the telemetry of plan's CPUs through take (a plan Reader: one submit per call)."""

    def __init__(
        self,
        plan: Plan,
        take: Callable[[], Raw],
        backend: str,
        min_interval_s: float,
        version: str = "",
        clock: Callable[[], float] = time.monotonic,
        limits: Limits | None = None,
    ) -> None:
        self.plan, self.take, self.backend = plan, take, backend
        self.limits = limits or Limits()
        self.min_interval_s, self.version, self.clock = min_interval_s, version, clock
        self.lock = threading.Lock()  # one scrape at a time: a threaded server may run two
        self.energy: dict[Key, float] = {}
        self.errors: dict[str, int] = {}  # errno name -> failed ops and failed batches
        self.reads = self.scrapes = 0
        self.sample: Sample | None = None
        self.last_raw: Raw | None = None
        self.read_at = 0.0
        self._read()  # the baseline

    def _read(self) -> None:
        """One batch; a sample of the interval since the previous successful one."""
        self.reads += 1
        self.read_at = self.clock()
        try:
            raw = self.take()
        except MsrError as e:  # the whole batch failed (module unloaded, CPU gone): no values this time
            self._count(e.errno or errno.EIO)
            self.sample = None
            return
        for err in raw.errs:
            if err:
                self._count(err)
        if self.last_raw is not None:
            self.sample = derive(self.plan, self.last_raw, raw)
            for key, joules in families.energy_keys(self.sample, self.plan.context):
                self.energy[key] = self.energy.get(key, 0.0) + joules
        self.last_raw = raw

    def _count(self, err: int) -> None:
        name = errno_name(err)
        self.errors[name] = self.errors.get(name, 0) + 1

    def collect(self) -> Any:
        with self.lock:
            t0 = time.perf_counter()
            self.scrapes += 1
            if self.sample is None or self.clock() - self.read_at >= self.min_interval_s:
                self._read()
            ctx = self.plan.context
            out: list[Any] = list(families.topology_families(self.plan.topology, self.sample))
            if self.sample is not None and self.last_raw is not None:
                out += families.sample_families(self.sample, ctx, self.energy)
                out += limits.families(self.limits, self.plan, self.last_raw)
            out += self._health(time.perf_counter() - t0)
            return out

    def _health(self, seconds: float) -> list[Any]:
        ctx = self.plan.context
        info = GaugeMetricFamily(
            f"{HEALTH}_info", "The exporter: its version, backend (msrdrv or msr, the kernel's driver) and CPU vendor.",
            labels=("version", "backend", "vendor"),
        )  # fmt: skip
        info.add_metric([self.version, self.backend, ctx.vendor], 1)
        absent = GaugeMetricFamily(
            f"{HEALTH}_metric_absent_info",
            "1 for each metric this machine lacks, with the reason (these metrics are not exported, never as 0).",
            labels=("metric", "reason"),
        )
        for name, why in [*families.absent(ctx), *self.limits.absent_reasons()]:
            absent.add_metric([name, why], 1)
        sources = GaugeMetricFamily(
            f"{HEALTH}_metric_source_info",
            "1 for each metric no MSR gives, with where its value comes from (AMD temperature: k10temp).",
            labels=("metric", "package", "source"),
        )
        for fam, package, what in families.sources(ctx):
            sources.add_metric([fam, package, what], 1)
        errs = CounterMetricFamily(
            f"{HEALTH}_batch_errors_total", "Failed reads (per op) and failed batches, by errno.", labels=("errno",)
        )
        for name, count in sorted(self.errors.items()):
            errs.add_metric([name], count)
        fams = [
            info,
            absent,
            sources,
            errs,
            CounterMetricFamily(f"{HEALTH}_scrapes_total", "Scrapes served.", value=self.scrapes),
            CounterMetricFamily(
                f"{HEALTH}_reads_total", "Hardware reads: one batch for every CPU each.", value=self.reads
            ),
            GaugeMetricFamily(f"{HEALTH}_batch_ops", "Ops in one hardware read's batch.", value=len(self.plan)),
            GaugeMetricFamily(
                f"{HEALTH}_min_read_interval_seconds",
                "A scrape sooner than this after the last read serves that read's values (--interval).",
                value=self.min_interval_s,
            ),
        ]
        if self.sample is not None:
            fams.append(
                GaugeMetricFamily(
                    f"{HEALTH}_read_interval_seconds",
                    "The time the ratios and frequencies cover.",
                    value=self.sample.dt_s,
                )
            )
        if self.last_raw is not None:
            fams.append(
                GaugeMetricFamily(
                    f"{HEALTH}_read_duration_seconds",
                    "Wall time of the last hardware read (the ioctl).",
                    value=(self.last_raw.t_done_ns - self.last_raw.t_submit_ns) / 1e9,
                )
            )
        fams.append(
            GaugeMetricFamily(
                f"{HEALTH}_scrape_duration_seconds", "Wall time of this scrape's collection.", value=seconds
            )
        )
        return fams
