"""Raw snapshots from a kernel sampler: msrdrv's per-CPU timers read a plan's registers
and the records of each period become one `Raw`, in plan op order, as a batch would give.

One sampler runs the union of the plan's per-CPU op lists (RDTSC, then every
sampled register) on every planned CPU, so all CPUs tick on one grid; derive()
uses only the values the plan asks for (core and package registers on their
leads).  A ring's records are numbered by their `seq`: the k-th sample record
of a ring belongs to period k.  Event records (offline, online, revoked) and
dropped records take a seq too, so the period of a record is its seq less the
ring's event records before it; periods the timer skipped (the ring header's
`missed`) and a CPU's time offline are placed by the record TSC.  A period a
CPU has no record for (dropped, skipped, offline) gives that CPU's ops an
errno for that period, never another period's values.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..device.abi import REC_OFFLINE, REC_ONLINE, REC_REVOKED, REC_SAMPLE
from ..ksampler.layout import Record
from .plan import Plan, Raw
from .sampler import Stats, Tick

MISSING = errno.ENODATA  # no record for the period: dropped (ring full) or skipped by the timer
OFFLINE = errno.ENXIO  # the CPU was offline, as a batch op on an offline CPU
FAULTED = errno.EIO  # the record's errs bit: the MSR faulted
REVOKED = errno.EACCES  # the record's errs bit, for an op an allowlist change revoked
LAG = 4  # periods a ring may trail the others before its missing records count as missing


def op_set(plan: Plan) -> list[int | str]:
    """The sampler's op set: "rdtsc", then each register of the plan once."""
    msrs: list[int | str] = ["rdtsc"]
    for op in plan.ops:
        if not op.rdtsc and op.msr not in msrs:
            msrs.append(op.msr)
    return msrs


@dataclass
class _Ring:
    last_seq: int | None = None  # seq of the last record seen
    index: int = -1  # period of the last sample record
    events: int = 0  # event records since the last sample record
    rejoin: bool = True  # the next sample starts the ring (at the start, or after ONLINE)
    offline: bool = False
    away: list[list[int]] = field(default_factory=list)  # [first, end) periods offline (end -1: still)
    missed: int = 0  # the header's missed count when last told
    budget: int = 0  # skipped periods not yet placed
    told: int = 0  # skips told since the last add(): their record may come with the next read


@dataclass
class Assembler:
    """Records in, per-period Raws out (pure: tests feed it Record tuples).

    cpus: the sampled CPUs; period_ns: the sampler's period; tsc_khz: the kernel's TSC
    frequency (0: unknown, then periods follow seq alone and times the grid); t0_ns: the
    CLOCK_MONOTONIC time of period 0 (the first tick)."""

    plan: Plan
    cpus: Sequence[int]
    period_ns: int
    tsc_khz: int = 0
    t0_ns: int = 0
    rings: dict[int, _Ring] = field(init=False)
    periods: dict[int, dict[int, Record]] = field(init=False, default_factory=dict)  # k -> cpu -> record
    revoked: int = 0  # ops revoked so far (bit i: op i of the set)
    emitted: int = -1  # the last period handed out
    late_records: int = 0  # records for a period already handed out (should not happen)
    tsc_ref: int | None = None  # the tsc of period 0's first record
    grid: float = 0.0  # the TSC of period 0's tick: the least late record's tsc less its periods

    def __post_init__(self) -> None:
        self.rings = {c: _Ring() for c in self.cpus}
        pos = {msr: i for i, msr in enumerate(op_set(self.plan))}
        self._where = [(op.cpu, 0 if op.rdtsc else pos[op.msr]) for op in self.plan.ops]

    def _ticks(self, ns: float) -> float:
        return ns * self.tsc_khz / 1e6

    def _periods(self, dtsc: int) -> int:
        """Whole periods in a TSC difference, rounded (0 when the TSC rate is unknown)."""
        if not self.tsc_khz:
            return 0
        return round(dtsc / self._ticks(self.period_ns))

    def _slot(self, tsc: int) -> int:
        """The period a record's TSC falls in on the timers' grid.  Used only while the ring
        has skips to place: a tick that overran fired a whole period late or more (no rounding
        up, or skips counted for the next record would go to this one).  From the grid, not
        the ring's last record, so a late record before a skip cannot hide it."""
        return math.floor((tsc - self.grid) / self._ticks(self.period_ns))

    def _learn_grid(self, tsc: int, index: int) -> None:
        """Move the grid's estimate earlier by a record less late than any so far (by less
        than half a period: more means the record is misplaced, not early)."""
        if self.tsc_khz:
            period = self._ticks(self.period_ns)
            at = tsc - index * period
            if self.grid - period / 2 < at < self.grid:
                self.grid = at

    def tell_missed(self, missed: dict[int, int]) -> None:
        """The rings' `missed` counters (header values), read after the records about to be
        added: a skip told here whose record is not among them waits for the next add()."""
        for cpu, n in missed.items():
            r = self.rings.get(cpu)
            if r is not None and n > r.missed:
                r.budget += n - r.missed
                r.told += n - r.missed
                r.missed = n

    def add(self, records: Iterable[Record]) -> None:
        for rec in records:
            r = self.rings.get(rec.cpu)
            if r is None:
                continue
            seq_steps = 1 if r.last_seq is None else rec.seq - r.last_seq  # > 1: drops
            r.last_seq = rec.seq
            if rec.type != REC_SAMPLE:
                r.events += 1
                if rec.type == REC_OFFLINE:
                    r.offline = True
                    r.away.append([r.index + 1, -1])
                elif rec.type == REC_ONLINE:
                    r.offline, r.rejoin = False, True
                elif rec.type == REC_REVOKED:
                    self.revoked |= rec.errs
                continue
            if r.rejoin:
                r.index = self._first_index(rec.tsc, r)
                r.rejoin = False
                if r.away and r.away[-1][1] < 0:
                    r.away[-1][1] = r.index
            else:
                steps = seq_steps - r.events
                if r.budget and self.tsc_khz:  # the timer skipped periods: place them by TSC
                    extra = min(r.budget, max(0, self._slot(rec.tsc) - r.index - steps))
                    steps += extra
                    r.budget -= extra
                r.index += max(1, steps)
            r.events = 0
            self._learn_grid(rec.tsc, r.index)
            if r.index <= self.emitted:
                self.late_records += 1
                continue
            self.periods.setdefault(r.index, {})[rec.cpu] = rec
        for r in self.rings.values():
            # A skip is counted just before its tick writes the record: a skip told since the
            # last add() may have its record in the next read, an older one is spent or was
            # jitter, and is not kept for later jitter.
            r.budget = min(r.budget, r.told)
            r.told = 0

    def _first_index(self, tsc: int, r: _Ring) -> int:
        """A ring's first sample (at the start or back online): period 0 for the very first
        record, else by TSC from it (without the TSC rate: the next period not yet out)."""
        if self.tsc_ref is None:
            self.tsc_ref, self.grid = tsc, float(tsc)
            return 0
        if self.tsc_khz:
            return max(0, self._periods(tsc - self.tsc_ref))
        return max(r.index + 1, self.emitted + 1)

    def pop(self, final: bool = False) -> list[tuple[int, Raw]]:
        """The periods now complete, in order: every online ring has passed them (or one ring
        is LAG periods ahead, or final).  A period with no record at all is not a sample."""
        if not self.periods:
            return []
        newest = max(self.periods)
        online = [r.index for r in self.rings.values() if not r.offline]
        upto = max(min(online), newest - LAG) if online and not final else newest
        out = []
        # hwmon is not the kernel sampler's: its temperature is the one at this consumption
        sensors = self.plan.context.read_sensors()
        for k in sorted(k for k in self.periods if k <= upto):
            out.append((k, self._raw(k, self.periods.pop(k), sensors)))
            self.emitted = k
        for r in self.rings.values():  # offline spans wholly handed out are done with
            r.away = [span for span in r.away if span[1] < 0 or span[1] > self.emitted]
        return out

    def _away(self, cpu: int, k: int) -> bool:
        """CPU cpu was offline in period k (between its OFFLINE record and its next sample)."""
        return any(first <= k and (end < 0 or k < end) for first, end in self.rings[cpu].away)

    def _raw(self, k: int, recs: dict[int, Record], sensors: dict[int, float | None]) -> Raw:
        values, errs = [], []
        for cpu, i in self._where:
            rec = recs.get(cpu)
            if rec is None:
                values.append(0)
                errs.append(OFFLINE if self._away(cpu, k) else MISSING)
            elif rec.errs >> i & 1:
                values.append(0)
                errs.append(REVOKED if self.revoked >> i & 1 else FAULTED)
            else:
                values.append(rec.values[i])
                errs.append(0)
        if self.tsc_khz and self.tsc_ref is not None:
            first = min(rec.tsc for rec in recs.values())
            t = self.t0_ns + round((first - self.tsc_ref) * 1e6 / self.tsc_khz)
        else:
            t = self.t0_ns + k * self.period_ns
        return Raw(tuple(values), tuple(errs), t, t, t, sensors)


class KernelSource:
    """Ticks from a running msrctl.ksampler.Sampler, as telemetry.sampler.Sampler yields them
    from its user-space loop: index = period, no late samples (the kernel keeps the grid),
    missed = periods without any record.  stop() is safe in a signal handler."""

    def __init__(
        self, plan: Plan, ksampler: Any, period_ns: int, t0_ns: int, idle: Callable[[], object] = lambda: None
    ) -> None:
        self.ks = ksampler
        self.period_ns = period_ns
        self.idle = idle
        self.asm = Assembler(plan, list(ksampler.cpus), period_ns, ksampler.tsc_khz, t0_ns)
        self.stats = Stats()
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True
        try:
            self.ks.stop()  # wakes the poll at once (POLLHUP)
        except OSError:
            pass

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _read(self, timeout: float) -> None:
        # The records first: a skip is counted before its record is written, so every skip
        # whose record is in this read is in the status read after it (the other order lost
        # the skips counted while read_records waited, and left a ring a period behind).
        records = self.ks.read_records(timeout)
        self.asm.tell_missed({h.cpu: h.missed + h.throttled for h in self.ks.status()})  # both skip ticks
        self.asm.add(records)

    def __iter__(self) -> Iterator[Tick[Raw]]:
        # Wake at least every 0.2 s so a command's exit is noticed (idle) without a signal.
        timeout = min(0.2, max(self.period_ns / 1e9, 0.01))
        prev = None
        while True:
            stopping = self._stopping or self.ks.stopped
            self._read(0 if stopping else timeout)
            for k, raw in self.asm.pop(final=stopping):
                missed = 0 if prev is None else k - prev - 1
                prev = k
                self.stats.samples += 1
                self.stats.missed += missed
                yield Tick(k, raw, 0, missed, False)
            if stopping:
                return
            self.idle()

    def ring_counts(self) -> tuple[int, int, int]:
        """Records the rings dropped (full), periods their timers skipped, and periods skipped
        over the interrupt budget (throttled), so far."""
        status = self.ks.status()
        return sum(h.dropped for h in status), sum(h.missed for h in status), sum(h.throttled for h in status)


RING_BYTES = 2 << 20  # all rings' records together: half a group member's sampler_max_kib_user


def ring_size(period_ns: int, nops: int = 1, ncpus: int = 1) -> tuple[int, int]:
    """(records per ring, watermark): wake about every 50 ms (every period if longer), and
    room for 2 s of records, so a reader the system starves for a while loses nothing;
    smaller when the rings' records would pass RING_BYTES."""
    watermark = max(1, min(1024, 50_000_000 // period_ns))
    records = 16
    while records < max(8 * watermark, 2_000_000_000 // period_ns) and records < 4096:
        records *= 2
    while records > 16 and records * (32 + 8 * nops) * ncpus > RING_BYTES:
        records //= 2
    return records, min(watermark, records // 4)


MAX_PERIOD_NS = 60_000_000_000  # the kernel sampler's longest period


def check_period(period_ns: int, min_period_ns: int) -> None:
    """A UsageError unless the kernel sampler takes period_ns (min_period_ns: this opener's
    minimum, from ksampler.limits(), higher without CAP_SYS_RAWIO)."""
    from ..errors import UsageError
    from .interval import format_interval

    if period_ns < min_period_ns:
        raise UsageError(
            f"interval {format_interval(period_ns)} is below the kernel sampler's minimum for this user",
            f"msrdrv's timers tick at most every {format_interval(min_period_ns)} here "
            "(module parameters sampler_min_period_ns, sampler_min_period_ns_user)",
            f"use -i {format_interval(min_period_ns).replace(' ', '')} or more, or drop --kernel-timer",
        )
    if period_ns > MAX_PERIOD_NS:
        raise UsageError(
            f"interval {format_interval(period_ns)} is too long for --kernel-timer",
            "the kernel sampler's longest period is 60 s",
            "use -i 60s or less, or drop --kernel-timer",
        )


def require(dev: Any, period_ns: int) -> None:
    """An MsrctlError (one line) unless dev is a msrdrv with the kernel sampler that
    takes period_ns from this user: checked before the probe reads anything."""
    from .. import errors
    from ..device.msrdrv import MsrError
    from ..errors import MsrctlError, UsageError
    from ..ksampler import sampler as ks

    if getattr(dev, "backend", "msrdrv") != "msrdrv":
        raise UsageError(
            "--kernel-timer needs msrdrv",
            "the kernel's msr driver (--backend msr) has no kernel sampler",
            "drop --backend msr, or drop --kernel-timer",
        )
    try:
        lim = ks.limits(dev)
    except MsrError as e:
        raise MsrctlError(
            "--kernel-timer is not available", str(e), "or record without --kernel-timer", errors.NOT_LOADED
        ) from None
    check_period(period_ns, lim.min_period_ns)


def start(dev: Any, plan: Plan, period_ns: int) -> tuple[Any, int]:
    """A kernel sampler running plan's op set on its CPUs every period_ns, and the
    CLOCK_MONOTONIC time of its first tick; an MsrctlError (one line) if it is refused."""
    from .. import errors
    from ..device.msrdrv import DeviceError
    from ..errors import MsrctlError
    from ..ksampler import sampler as ks

    records, watermark = ring_size(period_ns, len(op_set(plan)), len(plan.topology.cpus))
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + period_ns  # ticks fall on start + k * period
    try:
        sampler = ks.Sampler(op_set(plan), plan.topology.numbers, period_ns, records, watermark, device=dev)
    except DeviceError as e:
        code = errors.PERMISSION if e.errno in (errno.EACCES, errno.EPERM) else errors.FAILURE
        fix = errors.ASK_FOR_LIST if e.errno == errno.EACCES else "see `msrctl status`"
        raise MsrctlError("--kernel-timer", str(e), fix, code) from None
    return sampler, t0
