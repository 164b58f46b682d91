"""One version for everything: dkms/VERSION is the source, the rest must agree."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def source_version() -> str:
    return (REPO / "dkms" / "VERSION").read_text().strip()


def test_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", source_version())


def test_python_package_version_agrees() -> None:
    from msrctl._version import __version__

    assert __version__ == source_version()


def test_kbuild_takes_the_module_version_from_the_file() -> None:
    assert "$(src)/VERSION" in (REPO / "dkms" / "Kbuild").read_text()
