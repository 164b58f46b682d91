"""msrdrv's kernel sampler: per-CPU timers run an op set into rings user space maps read-only."""

from __future__ import annotations

from .layout import Record, RingHeader, SamplerHeader, record_dtype
from .sampler import RDTSC, Limits, Sampler, limits

__all__ = ["RDTSC", "Limits", "Record", "RingHeader", "Sampler", "SamplerHeader", "limits", "record_dtype"]
