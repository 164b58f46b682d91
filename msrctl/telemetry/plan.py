"""The op plan: one msrdrv batch per sample that reads every sampled register once per scope,
plus RDTSC on every CPU, and the raw snapshot a submission of it gives.

Per CPU, in CPU order: RDTSC, the per-CPU registers, the per-core registers if the
CPU is its core's first, the per-package registers if it is its package's first.
A CPU's ops run in one interrupts-off section (msrdrv runs up to section_ops, 64 by
default, together), so each CPU's TSC and counters are one consistent snapshot.
A raw snapshot is the batch's values and errors and the CLOCK_MONOTONIC times
around the submit: what `derive` needs, and what a kernel-timed sampler would record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .hwmon import Sensor, read_celsius
from .msrs import CORE, CPU, PACKAGE, TSC, Register
from .topology import Topology


class Submitter(Protocol):
    """Anything that runs a msrctl.device.msrdrv.Batch in one call: Device, or another backend."""

    def submit(self, batch: Any) -> int: ...


@dataclass(frozen=True)
class Context:
    """What the probe found, fixed for a recording: which metrics exist (None) or why not,
    and the static values the formulas need."""

    vendor: str
    metrics: Mapping[str, str | None]
    base_mhz: float | None = None
    base_source: str = ""
    tjmax: Mapping[int, int] = field(default_factory=dict)  # package -> TjMax in C
    energy_unit: Mapping[tuple[int, int], float] = field(default_factory=dict)  # (package, msr) -> J per count
    model: str = ""  # the model table's entry the quirks came from (describe())
    aperf_mperf_scale: int = 1  # APERF/MPERF count in units of this many cycles (Xeon Phi: 1024)
    tsc_tweak: bool = False  # the TSC runs at its own rate, MPERF at the base: Busy% from MPERF / base
    atom_c6_includes_c7: bool = False  # an efficient core's C6 counter includes C7: subtract it
    sensors: Mapping[int, Sensor] = field(default_factory=dict)  # package -> its hwmon temperature

    def read_sensors(self) -> dict[int, float | None]:
        """Each package's hwmon temperature now (degrees C; None: unreadable this time)."""
        return {p: read_celsius(s.path) for p, s in self.sensors.items()}

    def available(self, metric: str) -> bool:
        return self.metrics.get(metric, "unknown metric") is None


@dataclass(frozen=True)
class PlanOp:
    cpu: int
    msr: int  # TSC.msr for the RDTSC op
    rdtsc: bool = False


@dataclass(frozen=True)
class Raw:
    """One submission's results, in plan op order."""

    values: tuple[int, ...]
    errs: tuple[int, ...]  # 0 or a positive errno per op
    t_ns: int  # CLOCK_MONOTONIC halfway through the submit: the sample's time
    t_submit_ns: int  # just before the ioctl
    t_done_ns: int  # just after it
    sensors: Mapping[int, float | None] = field(default_factory=dict)  # package -> hwmon degrees C


class Plan:
    """The ops of one sample and where each register's value lands."""

    def __init__(self, topology: Topology, registers: Sequence[Register], context: Context) -> None:
        self.topology = topology
        self.registers = tuple(registers)
        self.context = context
        leads = {CORE: set(topology.cores()), PACKAGE: set(topology.packages())}
        ops: list[PlanOp] = []
        for cpu in topology.cpus:
            ops.append(PlanOp(cpu.cpu, TSC.msr, rdtsc=True))
            for scope in (CPU, CORE, PACKAGE):
                if scope == CPU or cpu in leads[scope]:
                    ops += [PlanOp(cpu.cpu, r.msr) for r in self.registers if r.scope == scope]
        self.ops = tuple(ops)
        self._index = {(op.cpu, op.msr): i for i, op in enumerate(ops)}

    def __len__(self) -> int:
        return len(self.ops)

    def index(self, cpu: int, msr: int) -> int | None:
        """The op that reads msr (TSC.msr: the RDTSC) on cpu, or None if the plan has none."""
        return self._index.get((cpu, msr))

    def per_cpu(self) -> int:
        """The most ops one CPU runs in a sample (a leader of a core and a package)."""
        counts: dict[int, int] = {}
        for op in self.ops:
            counts[op.cpu] = counts.get(op.cpu, 0) + 1
        return max(counts.values())

    def batch(self) -> Any:
        """A msrctl.device.msrdrv.Batch holding the plan's ops, to submit once per sample."""
        from ..device.msrdrv import Batch  # cffi only when a device is used

        b = Batch(max(1, len(self.ops)))
        for op in self.ops:
            if op.rdtsc:
                b.rdtsc(op.cpu)
            else:
                b.read(op.msr, op.cpu)
        return b


class Reader:
    """Takes raw snapshots: one submit of the plan's batch per call."""

    def __init__(self, dev: Submitter, plan: Plan) -> None:
        self.dev = dev
        self.plan = plan
        self.batch = plan.batch()
        self._ok = (0,) * len(plan)

    def __call__(self) -> Raw:
        clock = time.clock_gettime_ns
        t0 = clock(time.CLOCK_MONOTONIC)
        nerrs = self.dev.submit(self.batch)
        t1 = clock(time.CLOCK_MONOTONIC)
        values = tuple(self.batch.values())
        errs = tuple(self.batch.errors()) if nerrs else self._ok
        return Raw(values, errs, (t0 + t1) // 2, t0, t1, self.plan.context.read_sensors())
