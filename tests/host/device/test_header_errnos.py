"""The errors the uapi header promises are the errors the code returns: each ioctl's
comment in dkms/msrdrv.h names every -errno its handler (and the helpers it calls for
the decision) can return, so a new error path cannot land undocumented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DKMS = Path(__file__).resolve().parents[3] / "dkms"
SOURCES = "\n".join((DKMS / f).read_text() for f in ("msrdrv_main.c", "msrdrv_policy.c"))
HEADER = (DKMS / "msrdrv.h").read_text()
ERRNO = re.compile(r"-(E[A-Z0-9]+)\b")


def body(name: str) -> str:
    """A C function's body, from its definition to its closing brace at column 0."""
    m = re.search(rf"^\w[^\n]*\b{name}\([^;{{]*\)\n\{{\n(.*?)\n\}}\n", SOURCES, re.S | re.M)
    assert m, f"{name} not found in dkms/"
    return m.group(1)


def returned(*functions: str) -> set[str]:
    """The -errnos these functions return or assign to what they return."""
    return {e for f in functions for e in ERRNO.findall(body(f))}


def comment_before(marker: str) -> str:
    """The block comment just before the line holding marker in the header."""
    i = HEADER.index(marker)
    start = HEADER.rindex("/*", 0, i)
    return HEADER[start : HEADER.index("*/", start)]


def named(text: str) -> set[str]:
    return set(re.findall(r"\bE[A-Z0-9]{2,}\b", text))


@pytest.mark.parametrize(
    ("functions", "marker"),
    [
        # SET and GET and the checks SET makes before anything changes
        (("msrdrv_policy_set", "msrdrv_policy_validate", "msrdrv_policy_get"), "#define MSRDRV_ALLOW_READ"),
        # a batch as a whole: header, ops, their checks
        (("msrdrv_ioctl_batch", "msrdrv_scan"), "struct msrdrv_batch {"),
    ],
    ids=["allowlist", "batch"],
)
def test_every_returned_errno_is_in_the_header(functions: tuple[str, ...], marker: str) -> None:
    code = returned(*functions)
    assert code, functions  # the parse found the functions' errors
    missing = code - named(comment_before(marker))
    assert not missing, f"{', '.join(sorted(missing))} returned by {functions} but not in the header's comment"


def test_the_op_errors_are_each_op_check() -> None:
    """msrdrv_op.err: what the per-op checks and the op's run can leave there."""
    code = returned("msrdrv_policy_check", "msrdrv_policy_write_gate", "msrdrv_prepare") | {"EIO"}
    doc = named(comment_before("struct msrdrv_op {"))
    assert code <= doc, code - doc


def test_a_removed_errno_is_caught() -> None:
    """The comparison can fail: drop one errno from the header's SET comment and it is missed."""
    text = comment_before("#define MSRDRV_ALLOW_READ").replace("EPROTO", "")
    assert "EPROTO" in returned("msrdrv_policy_set") - named(text)
