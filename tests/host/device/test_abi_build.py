"""The committed msrctl/device/_abi_cffi.py is what msrctl/device/abi_build.py generates."""

from __future__ import annotations

from pathlib import Path

from msrctl.device import abi_build

REPO = Path(__file__).resolve().parents[3]


def test_generated_abi_module_is_current(tmp_path: Path) -> None:
    fresh = abi_build.build(tmp_path).read_text()
    committed = (REPO / "msrctl" / "device" / "_abi_cffi.py").read_text()
    assert fresh == committed, "run `python -m msrctl.device.abi_build` and commit msrctl/device/_abi_cffi.py"


def test_import_does_not_load_the_c_parser() -> None:
    import subprocess
    import sys

    code = "import sys, msrctl.device.abi; print('pycparser' in sys.modules, 'cffi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]
