"""Temperatures no MSR holds, from the kernel's hwmon drivers: AMD's through k10temp.

AMD CPUs keep their temperature in the SMN (System Management Network), which only
the kernel's k10temp driver reads; it shows one hwmon device per data-fabric node
(PCI function 18h.3 and up, one per package since Zen 2, four per package on Zen 1
EPYC).  Tdie, where k10temp shows it, is the die temperature; Tctl is the control
temperature fans follow, Tdie plus a model offset on some Threadripper parts (the
same value on the rest).  Paths are under msrctl.device.cpus.sysroot(), so tests
can use a fake tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..device.cpus import online_cpus, sysroot

DRIVER = "k10temp"
NO_DEVICE = (
    "no k10temp hwmon device (AMD keeps its temperature in the SMN, not in an MSR): "
    "load the driver with `sudo modprobe k10temp`"
)


@dataclass(frozen=True)
class Sensor:
    package: int
    path: Path  # the tempN_input file: millidegrees C
    what: str  # where it comes from, for the notes: "k10temp Tctl (hwmon2, node 0000:00:18.3)"


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""


def _devices(driver: str) -> list[Path]:
    """The hwmon devices of driver, in the order of their PCI addresses (the nodes' order)."""
    base = sysroot() / "sys/class/hwmon"
    try:
        found = [d for d in base.iterdir() if _text(d / "name") == driver]
    except OSError:
        return []

    def node(d: Path) -> tuple[str, str]:
        try:
            return os.path.basename(os.readlink(d / "device")), d.name
        except OSError:
            return "", d.name

    return sorted(found, key=node)


def _input(device: Path) -> tuple[Path, str] | None:
    """The device's die temperature input and its label: Tdie if shown, else Tctl, else temp1."""
    labels = {}
    for label in sorted(device.glob("temp*_label")):
        labels[_text(label)] = device / label.name.replace("_label", "_input")
    for want in ("Tdie", "Tctl"):
        if want in labels and labels[want].exists():
            return labels[want], want
    first = device / "temp1_input"
    return (first, "temp1") if first.exists() else None


def _packages() -> list[int]:
    """Every package of the machine (not only the sampled ones): k10temp numbers nodes over all."""
    base = sysroot() / "sys/devices/system/cpu"
    found = set()
    for cpu in online_cpus():
        text = _text(base / f"cpu{cpu}/topology/physical_package_id")
        if text.lstrip("-").isdigit():
            found.add(int(text))
    return sorted(found)


def k10temp(packages: Sequence[int]) -> tuple[dict[int, Sensor], str | None]:
    """The sensor of each of packages, or ({}, why there is none)."""
    devices = _devices(DRIVER)
    if not devices:
        return {}, NO_DEVICE
    every = _packages() or sorted(set(packages))
    if len(devices) % len(every):
        return {}, (
            f"cannot tell which package each of the {len(devices)} k10temp devices belongs to ({len(every)} packages)"
        )
    per = len(devices) // len(every)
    out: dict[int, Sensor] = {}
    for i, package in enumerate(every):
        if package not in packages:
            continue
        device = devices[i * per]
        found = _input(device)
        if found is None:
            return {}, f"the k10temp device {device.name} has no temperature input"
        path, label = found
        try:
            node = os.path.basename(os.readlink(device / "device"))
        except OSError:
            node = ""
        where = ", ".join(x for x in (device.name, f"node {node}" if node else "") if x)
        first = f", the first of its {per} nodes" if per > 1 else ""
        out[package] = Sensor(package, path, f"{DRIVER} {label} ({where}{first})")
    return out, None


def read_celsius(path: Path) -> float | None:
    """A hwmon temperature input in degrees C; None if it cannot be read now."""
    try:
        return int(path.read_text(encoding="ascii").strip()) / 1000.0
    except (OSError, ValueError):
        return None
