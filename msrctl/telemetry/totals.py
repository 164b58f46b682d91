"""Running totals of a recording: samples, time covered, energy per package and RAPL
domain, and ops that failed while sampling (none is lost silently)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .derive import Sample
from .plan import PlanOp

DOMAINS = ("pkg", "pp0", "pp1", "dram", "psys")


@dataclass
class Totals:
    samples: int = 0
    seconds: float = 0.0  # the intervals the samples cover, added up
    energy_j: dict[tuple[int, str], float] = field(default_factory=dict)  # (package, domain) -> J
    energy_s: dict[tuple[int, str], float] = field(default_factory=dict)  # the time those joules cover
    failed_samples: int = 0  # samples in which some op failed
    first_failure: tuple[PlanOp, int] | None = None

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.seconds += sample.dt_s
        for row in sample.packages:
            package = row["package"]
            assert isinstance(package, int)
            for d in DOMAINS:
                joules = row[f"{d}_energy_j"]
                if isinstance(joules, float):
                    key = (package, d)
                    self.energy_j[key] = self.energy_j.get(key, 0.0) + joules
                    self.energy_s[key] = self.energy_s.get(key, 0.0) + sample.dt_s
        if sample.failed:
            self.failed_samples += 1
            if self.first_failure is None:
                self.first_failure = sample.failed[0]

    def average_w(self, package: int, domain: str) -> float | None:
        seconds = self.energy_s.get((package, domain), 0.0)
        return self.energy_j[package, domain] / seconds if seconds > 0 else None
