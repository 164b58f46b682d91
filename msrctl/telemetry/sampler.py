"""Samples at a fixed interval without drift, counting late and missed intervals.

Deadlines are start + k * interval, not "interval after the last sample", so a
slow sample never shifts the ones after it.  A sample that starts more than
`late_after` past its deadline is late; when sampling falls a whole interval or
more behind, the deadlines passed are skipped and counted as missed (each
Tick's index keeps the deadline number, so the gap shows).  When stop is asked
for, one final sample closes the partial interval.  The clock and the wait are
parameters, so tests drive it with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Tick(Generic[T]):
    index: int  # the deadline's number: 0 for the first sample; gaps are missed intervals
    value: T  # what take() returned
    late_ns: int  # how long after its deadline the sample started (0: on time or early)
    missed: int  # deadlines skipped just before this one
    final: bool  # taken at stop, before its deadline: it closes a partial interval


@dataclass
class Stats:
    samples: int = 0
    late: int = 0  # samples started more than late_after past their deadline
    missed: int = 0  # deadlines with no sample
    max_late_ns: int = 0


class Sampler(Generic[T]):
    """Iterate to take samples: the first at once, then one per interval until stop(), and
    then a final one.  wait(seconds) sleeps at most that long and may return early (a
    signal, a child's exit): the sampler checks the clock and stop() after each wait."""

    def __init__(
        self,
        take: Callable[[], T],
        interval_ns: int,
        clock: Callable[[], int] = time.monotonic_ns,
        wait: Callable[[float], object] = time.sleep,
        late_after_ns: int | None = None,
    ) -> None:
        if interval_ns <= 0:
            raise ValueError("the interval must be positive")
        self.take = take
        self.interval_ns = interval_ns
        self.clock = clock
        self.wait = wait
        self._stopping = False
        self.late_after_ns = interval_ns // 10 if late_after_ns is None else late_after_ns
        self.stats = Stats()

    def stop(self) -> None:
        """Ask the iteration to take its final sample and end (a flag: safe in a signal handler)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _tick(self, index: int, deadline: int, missed: int, final: bool) -> Tick[T]:
        started = self.clock()
        value = self.take()
        late = max(0, started - deadline) if not final else 0
        st = self.stats
        st.samples += 1
        st.missed += missed
        if late > self.late_after_ns:
            st.late += 1
        st.max_late_ns = max(st.max_late_ns, late)
        return Tick(index, value, late, missed, final)

    def __iter__(self) -> Iterator[Tick[T]]:
        start = self.clock()
        yield self._tick(0, start, 0, False)
        k = 1
        while True:
            deadline = start + k * self.interval_ns
            now = self.clock()
            missed = 0
            if now < deadline:
                while now < deadline and not self.stopping:
                    self.wait((deadline - now) / 1e9)
                    now = self.clock()
                if now < deadline:  # stopped early: close the partial interval
                    yield self._tick(k, deadline, 0, True)
                    return
            else:
                missed = (now - deadline) // self.interval_ns  # whole intervals already gone
                k += missed
                deadline += missed * self.interval_ns
            yield self._tick(k, deadline, missed, False)
            if self.stopping:
                return
            k += 1
