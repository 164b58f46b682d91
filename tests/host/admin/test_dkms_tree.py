"""msrctl reads dkms's state from its tree, as `dkms status` prints it."""

from __future__ import annotations

from pathlib import Path

import pytest

from msrctl import errors
from msrctl.admin import system


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


def test_a_missing_module_names_the_missing_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No package; the package but no kernel headers (DKMS skipped the build); headers but no build."""
    from msrctl.admin.modtool import not_installed

    monkeypatch.setenv("MSRCTL_SYSROOT", str(tmp_path))
    release = "6.1.0-56-amd64"
    err = not_installed(release)
    assert err.why == f"msrdrv is not installed for kernel {release}" and "apt install msrdrv-dkms" in err.fix
    (tmp_path / "var/lib/dkms/msrdrv/0.2.0/source").mkdir(parents=True)
    build = tmp_path / "lib/modules" / release / "build"
    build.mkdir(parents=True)  # a headers package being removed can leave an empty directory
    err = not_installed(release)
    assert (
        err.why
        == f"DKMS has msrdrv 0.2.0 but has not built it for kernel {release}: the kernel headers are not installed"
    )
    assert err.fix == f"install them: sudo apt install linux-headers-{release} (DKMS then builds msrdrv by itself)"
    (build / "Makefile").write_text("")
    err = not_installed(release)
    assert err.why == f"DKMS has msrdrv 0.2.0 but has not built it for kernel {release}"
    assert err.fix.startswith(f"build it: sudo dkms autoinstall -k {release}")
    assert err.code == errors.MODULE
