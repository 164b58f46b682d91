"""The static meaning of a register value: named fields in physical units.

`decode(reg, value, context)` lists a value's fields (raw bits, value, unit, text);
`context` carries what some fields need from other registers (RAPL units, TjMax,
the TSC rate), and `needs`/`source`/`from_register` say which registers those are.
The pure unit helpers (RAPL units and windows, power limits, temperatures, ratios,
AMD P-states) are for every command that shows such values (decode, power, top).
"""

from .context import Context, from_register, needs, source
from .fields import KINDS, DecodedField, decode, decode_field, implausible, quantity
from .units import (
    BUS_MHZ,
    Limit,
    PowerLimits,
    RaplUnits,
    amd_pstate_amps,
    amd_pstate_mhz,
    hwp_activity_window_us,
    power_limit,
    rapl_time_window,
    rapl_units,
    rapl_window,
    ratio_mhz,
    temperature,
    tsc_seconds,
    turbo_ratio_limits,
)

__all__ = [
    "BUS_MHZ",
    "KINDS",
    "Context",
    "DecodedField",
    "Limit",
    "PowerLimits",
    "RaplUnits",
    "amd_pstate_amps",
    "amd_pstate_mhz",
    "decode",
    "decode_field",
    "from_register",
    "hwp_activity_window_us",
    "implausible",
    "needs",
    "power_limit",
    "quantity",
    "rapl_time_window",
    "rapl_units",
    "rapl_window",
    "ratio_mhz",
    "source",
    "temperature",
    "tsc_seconds",
    "turbo_ratio_limits",
]
