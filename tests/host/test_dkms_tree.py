"""msrctl reads dkms's state from its tree, as `dkms status` prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from msrctl import system


def make_tree(root: Path, installed: bool) -> None:
    ver = root / "var/lib/dkms/msrdrv/0.1.0"
    (ver / "6.1.0-56-amd64/x86_64/module").mkdir(parents=True)
    (ver / "source").symlink_to("/usr/src/msrdrv-0.1.0")
    (root / "var/lib/dkms/msrdrv/kernel-6.1.0-56-amd64-x86_64").symlink_to("0.1.0/6.1.0-56-amd64/x86_64")
    if installed:
        dest = root / "lib/modules/6.1.0-56-amd64/updates/dkms"
        dest.mkdir(parents=True)
        (dest / "msrdrv.ko.xz").touch()


@pytest.mark.parametrize(("installed", "state"), [(True, "installed"), (False, "built")])
def test_built_and_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, installed: bool, state: str) -> None:
    monkeypatch.setenv("MSRCTL_SYSROOT", str(tmp_path))
    make_tree(tmp_path, installed)
    assert system.dkms_status() == f"msrdrv/0.1.0, 6.1.0-56-amd64, x86_64: {state}"


def test_added_only_and_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSRCTL_SYSROOT", str(tmp_path))
    (tmp_path / "var/lib/dkms").mkdir(parents=True)
    assert system.dkms_status() == ""
    (tmp_path / "var/lib/dkms/msrdrv/0.2.0/source").mkdir(parents=True)
    assert system.dkms_status() == "msrdrv/0.2.0: added"
