"""The sampler's drift-free schedule and its late/missed accounting, on a fake clock."""

from __future__ import annotations

from msrctl.telemetry.sampler import Sampler

MS = 1_000_000


class FakeClock:
    """Time stands still except when the sampler waits or a sample takes time."""

    def __init__(self, t: int = 5_000 * MS) -> None:
        self.t = t
        self.waits: list[float] = []

    def __call__(self) -> int:
        return self.t

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += round(seconds * 1e9)


def run(costs_ms: list[int], interval_ms: int = 100, n: int | None = None) -> tuple[list, Sampler, FakeClock]:
    clock = FakeClock()
    start = clock.t
    costs = iter(costs_ms)

    def take() -> int:
        t = clock.t - start
        clock.t += next(costs, 1) * MS
        return t

    sampler: Sampler[int] = Sampler(take, interval_ms * MS, clock=clock, wait=clock.wait)
    ticks = []
    for tick in sampler:
        ticks.append(tick)
        if len(ticks) == (n or len(costs_ms)):
            break
    return ticks, sampler, clock


def test_on_time_samples_do_not_drift() -> None:
    ticks, sampler, _ = run([3] * 6)
    # each sample starts on its deadline although each takes 3 ms: no 3 ms drift per sample
    assert [t.value for t in ticks] == [0, 100 * MS, 200 * MS, 300 * MS, 400 * MS, 500 * MS]
    assert [t.index for t in ticks] == [0, 1, 2, 3, 4, 5]
    assert sampler.stats.late == sampler.stats.missed == 0 and sampler.stats.samples == 6


def test_a_slow_sample_makes_the_next_late_or_missed() -> None:
    # sample 2 takes 130 ms: sample 3 starts 30 ms late (over the 10 ms tolerance)
    # sample 4 takes 250 ms (400 to 650): deadline 500 is missed, the one of 600 is served 50 ms late
    ticks, sampler, _ = run([1, 1, 130, 1, 250, 1, 1], n=7)
    assert [(t.index, t.value // MS, t.late_ns // MS, t.missed) for t in ticks] == [
        (0, 0, 0, 0),
        (1, 100, 0, 0),
        (2, 200, 0, 0),
        (3, 330, 30, 0),
        (4, 400, 0, 0),
        (6, 650, 50, 1),
        (7, 700, 0, 0),
    ]
    assert sampler.stats.late == 2 and sampler.stats.missed == 1 and sampler.stats.max_late_ns == 50 * MS


def test_missed_intervals_are_counted_and_skipped() -> None:
    # sample 1 takes 350 ms (100 -> 450): deadlines 200, 300 and 400 are gone; the next is taken at once
    ticks, sampler, _ = run([1, 350, 1, 1], n=4)
    assert [(t.index, t.value // MS, t.missed) for t in ticks] == [(0, 0, 0), (1, 100, 0), (4, 450, 2), (5, 500, 0)]
    assert sampler.stats.missed == 2 and sampler.stats.late == 1  # sample 4: 50 ms after its deadline


def test_late_within_tolerance_is_not_late() -> None:
    ticks, sampler, _ = run([1, 108, 1], n=3)  # sample 2 starts 8 ms after its deadline: tolerance is 10 ms
    assert ticks[2].late_ns == 8 * MS and sampler.stats.late == 0


def test_stop_takes_a_final_sample_for_the_partial_interval() -> None:
    clock = FakeClock()
    start = clock.t
    sampler: Sampler[int] = Sampler(lambda: clock.t - start, 100 * MS, clock=clock, wait=lambda s: None)

    def wait(seconds: float) -> None:
        if clock.t - start >= 200 * MS:
            clock.t += 30 * MS  # a signal 30 ms into the wait
            sampler.stop()
        else:
            clock.wait(seconds)

    sampler.wait = wait
    ticks = list(sampler)
    assert [(t.index, t.value // MS, t.final) for t in ticks] == [
        (0, 0, False),
        (1, 100, False),
        (2, 200, False),
        (3, 230, True),
    ]
    assert sampler.stats.late == 0


def test_stop_while_the_consumer_handles_a_sample_ends_there() -> None:
    clock = FakeClock()
    start = clock.t
    sampler: Sampler[int] = Sampler(lambda: clock.t - start, 100 * MS, clock=clock, wait=clock.wait)
    ticks = []
    for tick in sampler:
        ticks.append(tick)
        if tick.index == 1:
            sampler.stop()  # e.g. SIGINT while the rows are written: that sample was the last
    assert [(t.index, t.value // MS, t.final) for t in ticks] == [(0, 0, False), (1, 100, False)]
