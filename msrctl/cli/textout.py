"""Write a command's generated text to stdout or a file, with msrctl's error style."""

from __future__ import annotations

import sys

from ..errors import MsrctlError


def emit(text: str, output: str = "-", stream: str = "stdout") -> None:
    """Write text to `output` ('-' means the given stream)."""
    if output == "-":
        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise MsrctlError(f"cannot write {output}", e.strerror or str(e), "check the path and permissions") from None
