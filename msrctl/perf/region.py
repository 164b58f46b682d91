"""Count performance events over a stretch of code, one batch at each end.

    with Device() as dev, Region(dev, events.parse("cycles,instructions", "intel"), cpu=0) as r:
        work()                      # pinned to CPU 0 by the caller
    print(r.counts, r.tsc, r.overhead)

Entering runs ONE batch on the CPU: save every register it will touch,
stop its counters, program the event selects, zero the counters, read the
TSC and start counting.  Leaving runs ONE batch: stop, read the TSC and the
counters, and put every saved register back.  The enable bits it shares
with others (IA32_PERF_GLOBAL_CTRL, IA32_FIXED_CTR_CTRL) are changed with
masked writes, so counters that perf or the NMI watchdog own keep running.
An empty region is measured first (calibrate) and its counts are
subtracted; they are reported as the overhead.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from typing import Any

from ..device.msrdrv import Batch, Device, MsrError
from . import pmu as pmu_mod
from .events import EN, Event, encode
from .pmu import INTEL_FIXED_CTR0, INTEL_FIXED_CTR_CTRL, INTEL_PERF_GLOBAL_CTRL, Pmu


class PmuError(MsrError):
    """No usable PMU, or not enough free counters."""


@dataclass(frozen=True)
class Planned:
    """One op of a region's batch, as planned (tests assert these)."""

    op: str  # "read", "write", "rdtsc"
    msr: int = 0
    value: int = 0
    mask: int | None = None
    what: str = ""


@dataclass(frozen=True)
class Slot:
    event: Event
    counter: int  # MSR of the counter
    select: int | None  # MSR of the event select (None for a fixed counter)
    fixed: int | None  # fixed counter index
    width: int
    gp: int | None = None  # general counter index

    @property
    def global_bit(self) -> int:
        """This counter's enable bit in the global control register."""
        return 1 << (32 + self.fixed) if self.fixed is not None else 1 << (self.gp or 0)


class Region:
    def __init__(
        self,
        dev: Device,
        events: list[Event],
        cpu: int = 0,
        pmu: Pmu | None = None,
        force: bool = False,
        calibrate: int = 5,
    ) -> None:
        self.dev = dev
        self.cpu = cpu
        self.pmu = pmu or pmu_mod.detect(cpu)
        if not self.pmu.present:
            raise PmuError(f"cannot count events on CPU {cpu}: {self.pmu.describe()}")
        self.events = events
        self.force = force
        self.calibrate_runs = calibrate
        self.counts: dict[str, int] = {}
        self.raw: dict[str, int] = {}
        self.overhead: dict[str, int] = {}
        self.tsc = 0
        self.slots = self._assign(self._in_use())
        self.start_plan = self._start_plan()
        self.stop_plan = self._stop_plan()
        self._start = self._batch(self.start_plan)
        self._stop = self._batch(self.stop_plan)

    # --- planning -------------------------------------------------------

    def _in_use(self) -> tuple[set[int], set[int]]:
        """GP and fixed counters someone already enabled (perf, the NMI watchdog)."""
        p = self.pmu
        b = Batch(p.gp_counters + 2)
        for i in range(p.gp_counters):
            b.read(p.evtsel(i), self.cpu)
        fixed_ctrl = b.read(INTEL_FIXED_CTR_CTRL, self.cpu) if p.fixed_counters else None
        self.dev.submit(b)
        b.check()
        gp = {i for i in range(p.gp_counters) if b.value(i) & EN}
        fixed = set()
        if fixed_ctrl is not None:
            ctrl = b.value(fixed_ctrl)
            fixed = {j for j in range(p.fixed_counters) if ctrl >> (4 * j) & 0x3}
        if (gp or fixed) and not self.force:
            warnings.warn(
                f"CPU {self.cpu}: counters in use by someone else (perf or the NMI watchdog): general {sorted(gp)}, "
                f"fixed {sorted(fixed)}; msrctl leaves them alone and uses the free ones",
                stacklevel=3,
            )
        if pmu_mod.nmi_watchdog_on():
            warnings.warn(
                "the NMI watchdog holds a counter (kernel.nmi_watchdog=1); `sysctl kernel.nmi_watchdog=0` frees it",
                stacklevel=3,
            )
        return (set(), set()) if self.force else (gp, fixed)

    def _assign(self, busy: tuple[set[int], set[int]]) -> list[Slot]:
        p = self.pmu
        busy_gp, busy_fixed = busy
        for ev in self.events:
            if ev.name in p.unavailable:
                raise PmuError(f"event '{ev.name}' is not available on this CPU (CPUID leaf 0xA marks it absent)")
        slots: list[Slot] = []
        free_gp = [i for i in range(p.gp_counters) if i not in busy_gp]
        for ev in self.events:
            fixed = ev.fixed if p.vendor == "intel" and p.version >= 2 else None
            if fixed is not None and fixed < p.fixed_counters and fixed not in busy_fixed:
                if not ev.kernel and all(s.fixed != fixed for s in slots):
                    slots.append(Slot(ev, INTEL_FIXED_CTR0 + fixed, None, fixed, p.fixed_width))
                    continue
            if not free_gp:
                raise PmuError(
                    f"too many events for CPU {self.cpu}: {p.gp_counters} general counters"
                    f" ({len(busy_gp)} in use by others)"
                )
            i = free_gp.pop(0)
            slots.append(Slot(ev, p.counter(i), p.evtsel(i), None, p.gp_width, gp=i))
        return slots

    def _global_mask(self) -> int:
        mask = 0
        for s in self.slots:
            mask |= s.global_bit
        return mask

    def _fixed_mask(self) -> tuple[int, int]:
        """(enable value, mask) of our nibbles in IA32_FIXED_CTR_CTRL: bit 1 = user mode."""
        value = mask = 0
        for s in self.slots:
            if s.fixed is not None:
                value |= 0x2 << (4 * s.fixed)
                mask |= 0xF << (4 * s.fixed)
        return value, mask

    def touched(self) -> list[int]:
        """Every MSR the region writes, in the order it saves them."""
        msrs: list[int] = []
        for s in self.slots:
            if s.select is not None:
                msrs.append(s.select)
            msrs.append(s.counter)
        if any(s.fixed is not None for s in self.slots):
            msrs.append(INTEL_FIXED_CTR_CTRL)
        if self.pmu.global_ctrl:
            msrs.append(self._global_msr())
        return msrs

    def _global_msr(self) -> int:
        return INTEL_PERF_GLOBAL_CTRL if self.pmu.vendor == "intel" else pmu_mod.AMD_PERF_GLOBAL_CTL

    def _start_plan(self) -> list[Planned]:
        plan = [Planned("read", m, what="save") for m in self.touched()]
        gmask = self._global_mask()
        if self.pmu.global_ctrl:
            plan.append(Planned("write", self._global_msr(), 0, gmask, "stop ours"))
        fvalue, fmask = self._fixed_mask()
        for s in self.slots:
            if s.select is not None:
                plan.append(
                    Planned("write", s.select, encode(s.event, self.pmu.vendor), None, f"program {s.event.name}")
                )
            plan.append(Planned("write", s.counter, 0, None, f"zero {s.event.name}"))
        if fmask:
            plan.append(Planned("write", INTEL_FIXED_CTR_CTRL, fvalue, fmask, "enable fixed"))
        plan.append(Planned("rdtsc", what="tsc start"))
        if self.pmu.global_ctrl:
            plan.append(Planned("write", self._global_msr(), gmask, gmask, "start ours"))
        return plan

    def _stop_plan(self) -> list[Planned]:
        plan = []
        if self.pmu.global_ctrl:
            plan.append(Planned("write", self._global_msr(), 0, self._global_mask(), "stop ours"))
        else:
            for s in self.slots:
                if s.select is not None:
                    plan.append(Planned("write", s.select, 0, EN, f"stop {s.event.name}"))
        plan.append(Planned("rdtsc", what="tsc stop"))
        plan += [Planned("read", s.counter, what=f"read {s.event.name}") for s in self.slots]
        # The restore values are filled in from the save reads before each stop;
        # in the shared enable registers only our own bits go back.
        shared = {INTEL_FIXED_CTR_CTRL: self._fixed_mask()[1], self._global_msr(): self._global_mask()}
        plan += [Planned("write", m, 0, shared.get(m), "restore") for m in self.touched()]
        return plan

    def _batch(self, plan: list[Planned]) -> Batch:
        b = Batch(len(plan))
        for p in plan:
            if p.op == "read":
                b.read(p.msr, self.cpu)
            elif p.op == "rdtsc":
                b.rdtsc(self.cpu)
            else:
                b.write(p.msr, p.value, self.cpu, p.mask)
        return b

    # --- running --------------------------------------------------------

    def _begin(self) -> None:
        """The start batch; its save reads become the stop batch's restore values."""
        start, stop = self._start, self._stop
        self.dev.submit(start)
        start.check()
        touched = self.touched()
        first_restore = len(self.stop_plan) - len(touched)
        for k in range(len(touched)):
            stop.set_value(first_restore + k, start.value(k))

    def _end(self) -> tuple[dict[str, int], int]:
        """The stop batch: (counts by event, TSC cycles between the two batches)."""
        stop = self._stop
        self.dev.submit(stop)
        stop.check()
        tsc_start = next(self._start.value(i) for i, p in enumerate(self.start_plan) if p.op == "rdtsc")
        tsc_idx = next(i for i, p in enumerate(self.stop_plan) if p.op == "rdtsc")
        counts = {s.event.name: stop.value(tsc_idx + 1 + k) & ((1 << s.width) - 1) for k, s in enumerate(self.slots)}
        return counts, stop.value(tsc_idx) - tsc_start

    def calibrate(self) -> dict[str, int]:
        """Median counts of an empty region: what the measurement itself costs."""
        runs: list[dict[str, int]] = []
        for _ in range(self.calibrate_runs):
            self._begin()
            runs.append(self._end()[0])
        self.overhead = {name: int(statistics.median(r[name] for r in runs)) for name in runs[0]} if runs else {}
        return self.overhead

    def __enter__(self) -> Region:
        if self.calibrate_runs:
            self.calibrate()
        self._begin()
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw, self.tsc = self._end()
        self.counts = {k: max(0, v - self.overhead.get(k, 0)) for k, v in self.raw.items()}

    def result(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "pmu": self.pmu.describe(),
            "tsc_cycles": self.tsc,
            "events": [
                {
                    "event": s.event.name,
                    "count": self.counts.get(s.event.name, 0),
                    "raw": self.raw.get(s.event.name, 0),
                    "overhead": self.overhead.get(s.event.name, 0),
                    "counter": f"fixed{s.fixed}" if s.fixed is not None else f"{s.counter:#x}",
                }
                for s in self.slots
            ],
        }
