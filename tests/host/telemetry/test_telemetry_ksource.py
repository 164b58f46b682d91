"""Kernel sampler records to per-period raw snapshots (msrctl.telemetry.ksource): the op
set, periods keyed by seq, a missing record, dropped-record gaps, skipped ticks, hotplug,
revoked and faulted ops, times from the TSC, and the metrics derive() makes of them."""

from __future__ import annotations

import errno
import random

import pytest

from msrctl.device.abi import REC_OFFLINE, REC_ONLINE, REC_REVOKED, REC_SAMPLE
from msrctl.errors import UsageError
from msrctl.ksampler.layout import Record
from msrctl.telemetry import ksource
from msrctl.telemetry.catalog import METRICS
from msrctl.telemetry.derive import derive
from msrctl.telemetry.ksource import Assembler, check_period, op_set, ring_size
from msrctl.telemetry.msrs import APERF, MPERF, PKG_ENERGY, THERM_STATUS
from msrctl.telemetry.plan import Context, Plan, Raw
from msrctl.telemetry.topology import Cpu, Topology

# CPUs 0 and 2 share core 0 of package 0, CPU 1 is core 1 there, CPU 3 is package 1.
TOPO = Topology((Cpu(0, 0, 0), Cpu(1, 1, 0), Cpu(2, 0, 0), Cpu(3, 0, 1)))
UNIT = 1 / 2**14  # J per energy count
CTX = Context(
    "intel",
    {m.name: None for m in METRICS},
    base_mhz=1000.0,
    tjmax={0: 100, 1: 100},
    energy_unit={(0, PKG_ENERGY.msr): UNIT, (1, PKG_ENERGY.msr): UNIT},
)
PLAN = Plan(TOPO, [MPERF, APERF, THERM_STATUS, PKG_ENERGY], CTX)
KHZ = 1_000_000  # 1 GHz: a tick per ns
P = 10_000_000  # 10 ms period
T0 = 5_000_000_000  # the first tick's TSC
WRAP = 2**32 - 1000  # the energy counter's start: it wraps after the first period


def values(k: int, cpu: int) -> tuple[int, ...]:
    """The op set's values (rdtsc, MPERF, APERF, THERM_STATUS, PKG_ENERGY) at period k."""
    tsc = T0 + k * P + cpu
    return (tsc, k * P // 2, k * P * 3 // 4, 0x8000_0000 | 40 << 16, (WRAP + k * 1600) & 0xFFFF_FFFF)


def rec(seq: int, cpu: int, k: int, errs: int = 0, kind: int = REC_SAMPLE, late: int = 0) -> Record:
    v = values(k, cpu)
    if kind != REC_SAMPLE:
        return Record(seq, T0 + k * P + late, errs, kind, cpu, (0,) * 5)
    return Record(seq, v[0] + late, errs, REC_SAMPLE, cpu, (v[0] + late, *v[1:]))


def asm(tsc_khz: int = KHZ) -> Assembler:
    return Assembler(PLAN, TOPO.numbers, P, tsc_khz, t0_ns=1_000_000_000)


def periods(a: Assembler, final: bool = False) -> dict[int, Raw]:
    return dict(a.pop(final))


def errs_of(raw: Raw, cpu: int) -> set[int]:
    return {e for op, e in zip(PLAN.ops, raw.errs) if op.cpu == cpu}


def test_op_set_is_rdtsc_then_each_register_once() -> None:
    assert op_set(PLAN) == ["rdtsc", MPERF.msr, APERF.msr, THERM_STATUS.msr, PKG_ENERGY.msr]


def test_periods_give_the_raws_a_batch_would() -> None:
    a = asm()
    a.add(rec(k, c, k) for c in TOPO.numbers for k in range(3))
    out = periods(a)
    assert sorted(out) == [0, 1, 2]
    pos = {MPERF.msr: 1, APERF.msr: 2, THERM_STATUS.msr: 3, PKG_ENERGY.msr: 4}
    for k, raw in out.items():
        want = tuple(values(k, op.cpu)[0 if op.rdtsc else pos[op.msr]] for op in PLAN.ops)
        assert raw.values == want and not any(raw.errs)
        assert raw.t_ns == 1_000_000_000 + k * P  # the earliest record's TSC, from period 0's
    s = derive(PLAN, out[0], out[1])
    assert s.dt_s == pytest.approx(0.01)
    assert [r["busy_pct"] for r in s.cpus] == [pytest.approx(50.0)] * 4
    assert [r["mhz_busy"] for r in s.cpus] == [pytest.approx(1500.0)] * 4
    assert [r["core_temp_c"] for r in s.cores] == [60, 60, 60]
    # the 32-bit energy counter wrapped between periods 0 and 1: 1600 counts, not -2**32
    assert [r["pkg_energy_j"] for r in s.packages] == [pytest.approx(1600 * UNIT)] * 2
    assert not s.failed


def test_a_missing_record_errs_that_cpu_for_that_period_only() -> None:
    a = asm()
    # CPU 1's record of period 1 was dropped: its seq 1 never arrives, seq 2 is period 2
    a.add(rec(k, c, k) for c in TOPO.numbers for k in range(4) if (c, k) != (1, 1))
    out = periods(a)
    assert sorted(out) == [0, 1, 2, 3]
    assert errs_of(out[1], 1) == {errno.ENODATA} and errs_of(out[1], 0) == {0}
    i = PLAN.index(1, MPERF.msr)
    assert i is not None and out[2].values[i] == values(2, 1)[1]  # not shifted to period 1
    s1, s2, s3 = derive(PLAN, out[0], out[1]), derive(PLAN, out[1], out[2]), derive(PLAN, out[2], out[3])
    assert s1.cpus[1]["busy_pct"] is None and s2.cpus[1]["busy_pct"] is None  # no made-up value
    assert s1.cpus[0]["busy_pct"] == pytest.approx(50.0) and s3.cpus[1]["busy_pct"] == pytest.approx(50.0)
    assert {op.cpu for op, _ in s1.failed} == {1} and {e for _, e in s1.failed} == {errno.ENODATA}


def test_a_full_ring_s_dropped_records_are_a_seq_gap() -> None:
    a = asm()
    # CPU 3's ring was full for periods 2-4: the kernel counted 3 drops, seq jumps 1 -> 5
    a.add(rec(k, c, k) for c in TOPO.numbers for k in range(7) if c != 3 or k not in (2, 3, 4))
    out = periods(a)
    assert sorted(out) == list(range(7))
    for k in range(7):
        assert errs_of(out[k], 3) == ({errno.ENODATA} if k in (2, 3, 4) else {0})
    i = PLAN.index(3, PKG_ENERGY.msr)
    assert i is not None and out[5].values[i] == values(5, 3)[4]
    assert derive(PLAN, out[4], out[5]).packages[1]["pkg_energy_j"] is None
    assert derive(PLAN, out[5], out[6]).packages[1]["pkg_energy_j"] == pytest.approx(1600 * UNIT)


def test_skipped_ticks_are_placed_by_tsc_only_when_the_ring_counted_them() -> None:
    a = asm()
    a.add([rec(0, 0, 0), rec(1, 0, 1, late=7 * P // 10), rec(2, 0, 2)])  # a late tick (1.7 P after): no skip
    a.add(rec(k, c, k) for c in (1, 2, 3) for k in range(3))
    out = periods(a)
    i = PLAN.index(0, MPERF.msr)
    assert i is not None and sorted(out) == [0, 1, 2] and out[1].values[i] == values(1, 0)[1]
    a.tell_missed({0: 2})  # then CPU 0's timer skipped periods 3 and 4 (seq runs on)
    a.add([rec(3, 0, 5), rec(4, 0, 6)])
    a.add(rec(k, c, k) for c in (1, 2, 3) for k in (5, 6))  # the others dropped theirs (seq gaps)
    out = periods(a, final=True)
    assert sorted(out) == [5, 6]  # no record at all: not a sample (the CLI counts missed intervals)
    assert out[5].values[i] == values(5, 0)[1] and not any(out[5].errs)


def kernel_timers(seed: int, slots: int) -> list[tuple[int, int, int, int, int]]:
    """What msrdrv's per-CPU hrtimers write when the guest stalls: (fire, cpu, seq, slot,
    missed) per record, in time order.  A tick fires late (mostly a little, sometimes by
    0.7-2.6 periods); one late by a period or more forwards past the ticks it overran and
    counts them in the ring's `missed` just before it writes its record."""
    rnd = random.Random(seed)
    out = []
    for cpu in TOPO.numbers:
        slot = seq = missed = 0
        while slot < slots:
            late = int(P * (rnd.uniform(0.7, 2.6) if rnd.random() < 0.08 else rnd.uniform(0, 0.3)))
            overruns = late // P + 1
            missed += overruns - 1
            out.append((slot * P + late, cpu, seq, slot, missed))
            seq, slot = seq + 1, slot + overruns
    return sorted(out)


@pytest.mark.parametrize("seed", range(12))
def test_stalled_timers_leave_no_ring_a_period_off(seed: int) -> None:
    """Reads at random moments, each reading the ring headers a little after the records
    (as KernelSource does: skips counted meanwhile belong to records of the next read).
    Every record lands in the period its tick belongs to (a tick late by a whole period or
    more, in the period its time falls in), and sample times only go forward."""
    fired = kernel_timers(seed, 300)
    rnd = random.Random(~seed)
    a = asm()
    got: dict[int, Raw] = {}
    now = i = 0
    while i < len(fired):
        now += int(P * rnd.uniform(0.3, 4))
        j = i
        while j < len(fired) and fired[j][0] <= now:
            j += 1
        status = now + int(P * rnd.uniform(0, 0.6))  # the headers, read after the records
        missed = {c: 0 for c in TOPO.numbers}
        for fire, cpu, _, _, m in fired:
            if fire <= status:
                missed[cpu] = m
        records = [rec(seq, cpu, slot, late=fire - slot * P) for fire, cpu, seq, slot, _ in fired[i:j]]
        a.tell_missed(missed)
        a.add(records)
        got.update(a.pop())
        i = j
    got.update(a.pop(final=True))
    for cpu in TOPO.numbers:
        i = PLAN.index(cpu, MPERF.msr)
        assert i is not None
        placed = {raw.values[i] * 2 // P: k for k, raw in got.items() if raw.errs[i] == 0}
        for fire, c, _, slot, _ in fired:
            if c == cpu:
                late = fire - slot * P
                # a tick late by a hair over whole periods may stay in its own period: the
                # grid is known only to within the least late tick seen (here < 1 % of one)
                ok = {slot + late // P} | ({slot + late // P - 1} if late % P < P // 100 else set())
                assert placed.get(slot) in ok, (cpu, slot, late / P, placed.get(slot))
        assert len(placed) == len([f for f in fired if f[1] == cpu])  # every record, once
    times = [raw.t_ns for _, raw in sorted(got.items())]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert a.late_records == 0


def test_hotplug_events_take_a_seq_and_offline_periods_are_enxio() -> None:
    a = asm()
    recs = [rec(k, c, k) for c in (0, 1, 2) for k in range(8)]
    # CPU 3: periods 0-1, OFFLINE, (offline 2-4), ONLINE, periods 5-7; events take seqs 2 and 3
    recs += [rec(0, 3, 0), rec(1, 3, 1), rec(2, 3, 1, kind=REC_OFFLINE, late=P // 2)]
    recs += [rec(3, 3, 4, kind=REC_ONLINE, late=P // 2), rec(4, 3, 5), rec(5, 3, 6), rec(6, 3, 7)]
    a.add(recs)
    out = periods(a, final=True)
    assert sorted(out) == list(range(8))
    for k in range(8):
        assert errs_of(out[k], 3) == ({errno.ENXIO} if k in (2, 3, 4) else {0}), k
    i = PLAN.index(3, MPERF.msr)
    assert i is not None and out[6].values[i] == values(6, 3)[1]


def test_revoked_and_faulted_ops() -> None:
    a = asm()
    a.add(rec(k, c, k) for c in (0, 1, 2) for k in range(3))
    # CPU 3: op 4 (PKG_ENERGY) revoked after period 0; op 3 (THERM_STATUS) faulted in period 2
    a.add([rec(0, 3, 0), rec(1, 3, 0, errs=1 << 4, kind=REC_REVOKED, late=P // 2)])
    a.add([rec(2, 3, 1, errs=1 << 4), rec(3, 3, 2, errs=1 << 4 | 1 << 3)])
    out = periods(a, final=True)
    assert PLAN.index(3, PKG_ENERGY.msr) is not None
    assert out[1].errs[PLAN.index(3, PKG_ENERGY.msr)] == errno.EACCES  # type: ignore[index]
    assert out[2].errs[PLAN.index(3, THERM_STATUS.msr)] == errno.EIO  # type: ignore[index]
    assert out[1].errs[PLAN.index(3, THERM_STATUS.msr)] == 0  # type: ignore[index]


def test_a_trailing_ring_holds_periods_back_up_to_lag() -> None:
    a = asm()
    a.add(rec(k, c, k) for c in (0, 1, 3) for k in range(3))
    a.add([rec(0, 2, 0)])
    assert sorted(periods(a)) == [0]  # CPU 2 has not passed period 1 yet
    a.add(rec(k, c, k) for c in (0, 1, 3) for k in range(3, 3 + ksource.LAG))
    out = periods(a)
    assert sorted(out) == [1, 2]  # the newest is LAG periods ahead: CPU 2's records count as missing
    assert errs_of(out[1], 2) == {errno.ENODATA}
    a.add([rec(1, 2, 1)])  # it comes after all: counted, not mixed in
    assert a.late_records == 1


def test_without_the_tsc_rate_periods_follow_seq_and_times_the_grid() -> None:
    a = asm(tsc_khz=0)
    a.add(rec(k, c, k, late=(k % 2) * 6 * P // 10) for c in TOPO.numbers for k in range(4))
    out = periods(a)
    assert [raw.t_ns for raw in out.values()] == [1_000_000_000 + k * P for k in range(4)]
    assert all(not any(raw.errs) for raw in out.values())


def test_period_checks() -> None:
    check_period(P, 100_000)
    with pytest.raises(UsageError) as e:
        check_period(1_000_000, 20_000_000)
    assert e.value.message == (
        "interval 1 ms is below the kernel sampler's minimum for this user: msrdrv's timers tick at most every "
        "20 ms here (module parameters sampler_min_period_ns, sampler_min_period_ns_user); "
        "use -i 20ms or more, or drop --kernel-timer"
    )
    with pytest.raises(UsageError, match="longest period is 60 s"):
        check_period(61_000_000_000, 100_000)


@pytest.mark.parametrize("period", [100_000, 1_000_000, 10_000_000, 50_000_000, 1_000_000_000])
def test_ring_size(period: int) -> None:
    records, watermark = ring_size(period)
    assert records & (records - 1) == 0 and 16 <= records <= 4096 and 1 <= watermark <= records // 4
    assert watermark * period <= max(period, 50_000_000)  # a wake at least every 50 ms
    assert records * period >= min(2_000_000_000, 4096 * period)  # 2 s of records, up to 4096
    # many CPUs and ops: the rings stay within RING_BYTES, a quarter of a ring still wakes
    records, watermark = ring_size(period, nops=20, ncpus=256)
    assert records * (32 + 8 * 20) * 256 <= ksource.RING_BYTES or records == 16
    assert records & (records - 1) == 0 and 1 <= watermark <= records // 4
