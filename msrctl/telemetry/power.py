"""RAPL power limits: read them per package, and compute the masked write that sets them.

Pure functions (no device): the caller reads the registers of `Domain.reads` on
one CPU of each package, `state()` turns the raw values into limits in watts and
seconds, and `plan()` checks requested limits against the package's own power
range (MSR_PKG_POWER_INFO / MSR_DRAM_POWER_INFO) and the lock bit, and returns
the value and mask of ONE masked write.  msrdrv runs a masked write as a
read-modify-write on the target CPU with interrupts off, so bits outside the
mask (the lock bit above all) are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..decode.units import Limit, RaplUnits, power_limit, rapl_units, rapl_window

RAPL_POWER_UNIT = 0x606

# The bits `plan()` may change: the limits, enables, clamps and windows, never a lock bit.
MASK_TWO = 0x00FFFFFF_00FFFFFF  # PL1 in 23:0, PL2 in 55:32; lock 63 stays out
MASK_PSYS = 0x0001FFFF_00FFFFFF  # platform PL2 has no window field
MASK_ONE = 0x00FFFFFF  # DRAM/PP0/PP1: one limit; lock 31 stays out


@dataclass(frozen=True)
class Domain:
    """A RAPL power-limit register and the register that bounds it, if any."""

    name: str
    limit_msr: int
    info_msr: int | None
    two_limits: bool
    pl2_window: bool
    mask: int
    what: str

    @property
    def reads(self) -> tuple[int, ...]:
        return (RAPL_POWER_UNIT, self.limit_msr) + ((self.info_msr,) if self.info_msr is not None else ())


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain("package", 0x610, 0x614, True, True, MASK_TWO, "MSR_PKG_POWER_LIMIT"),
        Domain("dram", 0x618, 0x61C, False, True, MASK_ONE, "MSR_DRAM_POWER_LIMIT"),
        Domain("pp0", 0x638, None, False, True, MASK_ONE, "MSR_PP0_POWER_LIMIT (cores)"),
        Domain("pp1", 0x640, None, False, True, MASK_ONE, "MSR_PP1_POWER_LIMIT (uncore/graphics)"),
        Domain("psys", 0x65C, None, True, False, MASK_PSYS, "MSR_PLATFORM_POWER_LIMIT"),
    )
}


class PowerError(ValueError):
    """A request the package cannot take: (what, why, what to do)."""

    def __init__(self, what: str, why: str, todo: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what, self.why, self.todo = what, why, todo


@dataclass(frozen=True)
class Range:
    """What MSR_*_POWER_INFO allows; None where the field is 0 (not specified)."""

    tdp: float | None
    min_watts: float | None
    max_watts: float | None
    max_seconds: float | None


@dataclass(frozen=True)
class State:
    domain: Domain
    units: RaplUnits
    pl1: Limit
    pl2: Limit | None
    locked: bool
    range: Range | None
    raw: int


def power_range(value: int, units: RaplUnits) -> Range:
    def watts(v: int) -> float | None:
        return v * units.watts if v else None

    window = (value >> 48) & 0x7F
    return Range(
        tdp=watts(value & 0x7FFF),
        min_watts=watts((value >> 16) & 0x7FFF),
        max_watts=watts((value >> 32) & 0x7FFF),
        max_seconds=rapl_window(window, units.seconds) if window else None,
    )


def state(domain: Domain, unit_raw: int, limit_raw: int, info_raw: int | None = None) -> State:
    """The limits of one domain from its raw registers; unit_raw must not be 0 (absent RAPL)."""
    if unit_raw == 0:
        raise PowerError(
            "RAPL absent", "MSR_RAPL_POWER_UNIT reads 0 (not implemented here)", "run on hardware with Intel RAPL"
        )
    units = rapl_units(unit_raw)
    limits = power_limit(limit_raw, units, domain.two_limits, domain.pl2_window)
    rng = power_range(info_raw, units) if info_raw else None
    return State(domain, units, limits.pl1, limits.pl2, limits.locked, rng, limit_raw)


def with_raw(st: State, raw: int) -> State:
    """st's domain, units and range with the limits of another raw value (e.g. a read-back)."""
    limits = power_limit(raw, st.units, st.domain.two_limits, st.domain.pl2_window)
    return replace(st, pl1=limits.pl1, pl2=limits.pl2, locked=limits.locked, raw=raw)


def encode_watts(watts: float, units: RaplUnits, name: str) -> int:
    raw = round(watts / units.watts)
    if watts <= 0 or raw < 1:
        raise PowerError(f"{name} {watts:g} W", "a limit must be positive", f"give at least {units.watts:g} W")
    if raw > 0x7FFF:
        top = 0x7FFF * units.watts
        raise PowerError(f"{name} {watts:g} W", f"the field holds at most {top:g} W", "give a smaller limit")
    return raw


def encode_window(seconds: float, units: RaplUnits, name: str) -> int:
    """The 7-bit window field (Y in 4:0, Z in 6:5) nearest to seconds."""
    if seconds <= 0:
        raise PowerError(f"{name} {seconds:g} s", "a time window must be positive", "give e.g. 1s or 10ms")
    best = min(range(128), key=lambda raw: abs(rapl_window(raw, units.seconds) - seconds))
    got = rapl_window(best, units.seconds)
    if abs(got - seconds) > 0.25 * seconds:
        lo, hi = rapl_window(0, units.seconds), rapl_window(127, units.seconds)
        raise PowerError(f"{name} {seconds:g} s", f"windows run from {lo:g} s to {hi:g} s", "give one in that range")
    return best


@dataclass(frozen=True)
class Request:
    """What to change; None leaves a field as it is."""

    pl1: float | None = None
    pl1_window: float | None = None
    pl2: float | None = None
    pl2_window: float | None = None
    enable: bool | None = None  # both limits' enable bits
    clamp: bool | None = None  # both limits' clamp bits

    def empty(self) -> bool:
        return all(v is None for v in vars(self).values())


def _check_watts(watts: float, rng: Range | None, name: str) -> None:
    if rng is None:
        return
    if rng.min_watts is not None and watts < rng.min_watts:
        raise PowerError(
            f"{name} {watts:g} W",
            f"below the package's minimum of {rng.min_watts:g} W (power info register)",
            f"give at least {rng.min_watts:g} W",
        )
    if rng.max_watts is not None and watts > rng.max_watts:
        raise PowerError(
            f"{name} {watts:g} W",
            f"above the package's maximum of {rng.max_watts:g} W (power info register)",
            f"give at most {rng.max_watts:g} W",
        )


def _check_window(seconds: float, rng: Range | None, name: str) -> None:
    if rng is not None and rng.max_seconds is not None and seconds > rng.max_seconds:
        raise PowerError(
            f"{name} {seconds:g} s",
            f"longer than the package's maximum window of {rng.max_seconds:g} s",
            f"give at most {rng.max_seconds:g} s",
        )


def plan(st: State, req: Request) -> tuple[int, int]:
    """(value, mask) of the one masked write that applies req to st's register."""
    d = st.domain
    if req.empty():
        raise PowerError("nothing to set", "no limit, window, enable or clamp given", "give e.g. --pl1 95")
    if st.locked:
        raise PowerError(
            f"{d.what} is locked", "firmware set its lock bit; it clears only at reset", "change the limit in firmware"
        )
    if (req.pl2 is not None or req.pl2_window is not None) and not d.two_limits:
        raise PowerError(f"PL2 on {d.name}", f"{d.what} has one limit", "use --pl1 and --pl1-window")
    if req.pl2_window is not None and not d.pl2_window:
        raise PowerError("--pl2-window on psys", "the processor chooses the platform PL2 window", "leave it out")
    value = mask = 0
    words = [(0, req.pl1, req.pl1_window, "PL1")]
    if d.two_limits:
        words.append((32, req.pl2, req.pl2_window, "PL2"))
    for shift, watts, window, name in words:
        if watts is not None:
            _check_watts(watts, st.range, name)
            value |= encode_watts(watts, st.units, name) << shift
            mask |= 0x7FFF << shift
        if window is not None:
            _check_window(window, st.range, f"{name} window")
            value |= encode_window(window, st.units, f"{name} window") << (shift + 17)
            mask |= 0x7F << (shift + 17)
        if req.enable is not None:
            value |= int(req.enable) << (shift + 15)
            mask |= 1 << (shift + 15)
        if req.clamp is not None:
            value |= int(req.clamp) << (shift + 16)
            mask |= 1 << (shift + 16)
    mask &= d.mask
    new_pl1 = req.pl1 if req.pl1 is not None else st.pl1.watts
    new_pl2 = req.pl2 if req.pl2 is not None else (st.pl2.watts if st.pl2 else None)
    if new_pl2 is not None and (req.pl1 is not None or req.pl2 is not None) and new_pl2 < new_pl1:
        raise PowerError(
            f"PL2 {new_pl2:g} W below PL1 {new_pl1:g} W",
            "the short-term limit must not be lower than the long-term one",
            "raise --pl2 or lower --pl1",
        )
    return value, mask


def apply(raw: int, value: int, mask: int) -> int:
    """The register after the masked write (what a read-back must show)."""
    return (raw & ~mask) | (value & mask)
