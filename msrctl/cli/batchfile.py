"""Batch input: a line-oriented text format, or JSON (detected by a leading [ or {).

Text, one op per line, '#' starts a comment, keywords in any case:

    read  MSR [cpu LIST]
    write MSR VALUE [mask MASK] [cpu LIST]
    rdtsc [cpu LIST]
    nop
    stop

LIST is a CPU number, a list such as 0,2-5 or `all` (the online CPUs); `cpus`
is accepted for `cpu`; the default is CPU 0.  An op given several CPUs becomes
one op per CPU.  JSON: a list of objects such as
{"op": "write", "msr": "IA32_TSC_AUX", "value": "0x5", "mask": 255, "cpu": "0-1"}
(or {"ops": [...]}); numbers may be JSON integers or strings.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

from ..device.ops import KINDS, Op
from ..errors import UsageError
from ..registers.names import parse_msr
from ..registers.parse import parse_cpus, parse_value

_OP_FIX = "use read, write, rdtsc, nop or stop"


def parse(text: str, source: str, online: Callable[[], list[int]]) -> list[Op]:
    """All ops of a batch input, JSON or text by its first character.

    A UTF-8 byte-order mark (as some editors write) is skipped.  Raises
    UsageError for input that holds no op, naming what it holds instead."""
    text = text[1:] if text.startswith("\ufeff") else text
    if text.lstrip()[:1] in ("[", "{"):
        ops = parse_json(text, source, online)
        if not ops:
            raise UsageError(
                f"{source}: no ops", "the JSON holds an empty list of ops", 'add ops: [{"op": "read", ...}]'
            )
        return ops
    ops = parse_text(text, source, online)
    if not ops:
        raise UsageError(f"{source}: no ops", "the input holds only blank lines and comments", "add ops")
    return ops


def _unknown_op(word: str) -> UsageError:
    close = difflib.get_close_matches(word.lower(), KINDS, n=1)
    hint = f"did you mean {close[0]}? ({_OP_FIX})" if close else _OP_FIX
    return UsageError(f"unknown op '{word}'", "not a batch operation", hint)


def _cpus(text: str, online: Callable[[], list[int]]) -> list[int]:
    return online() if text.strip().lower() == "all" else parse_cpus(text)


def parse_text(text: str, source: str, online: Callable[[], list[int]]) -> list[Op]:
    ops: list[Op] = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}:{number}"
        try:
            ops.extend(_text_line(words, where, online))
        except UsageError as e:
            raise e.at(where) from None
    return ops


def _text_line(words: list[str], where: str, online: Callable[[], list[int]]) -> list[Op]:
    kind = words[0].lower()
    if kind not in KINDS:
        raise _unknown_op(words[0])
    args = words[1:]
    positional = {"read": ["MSR"], "write": ["MSR", "VALUE"]}.get(kind, [])
    if len(args) < len(positional) or any(a.lower() in ("cpu", "cpus", "mask") for a in args[: len(positional)]):
        raise UsageError(
            f"{kind} needs {' and '.join(positional)}",
            "missing in this line",
            f"write it as: {kind} {' '.join(positional)} [cpu N]".replace("VALUE [", "VALUE [mask M] ["),
        )
    msr = parse_msr(args[0]) if positional else 0
    value = parse_value(args[1]) if kind == "write" else 0
    cpus = [0]
    mask = None
    rest = args[len(positional) :]
    allowed = {"read": ("cpu", "cpus"), "rdtsc": ("cpu", "cpus"), "write": ("cpu", "cpus", "mask")}.get(kind, ())
    seen: set[str] = set()
    while rest:
        key = rest[0].lower()
        if key in ("cpu", "cpus", "mask") and ("cpu" if key == "cpus" else key) in seen:
            raise UsageError(
                f"'{rest[0]}' given twice", "an op takes one", "give it once (a CPU LIST like 0,2-5 for several)"
            )
        seen.add("cpu" if key == "cpus" else key)
        if key not in allowed:
            extra = f"'{rest[0]}' after {kind}"
            fix = f"options here: {', '.join(allowed)}" if allowed else f"{kind} takes no arguments"
            raise UsageError(f"unexpected {extra}", "not part of this op's syntax", fix)
        if len(rest) < 2:
            raise UsageError(f"'{rest[0]}' needs a value", "it ends the line", f"write {key} followed by its value")
        if key == "mask":
            mask = parse_value(rest[1], "mask")
        else:
            cpus = _cpus(rest[1], online)
        rest = rest[2:]
    if kind in ("nop", "stop"):
        return [Op(kind, 0, where=where)]
    return [Op(kind, cpu, msr, value, mask, where) for cpu in cpus]


def _field(item: dict[str, Any], key: str, parse_fn: Callable[[str], int]) -> int:
    raw = item[key]
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise UsageError(
            f"malformed {key} {json.dumps(raw)}", "expected a number or a string", f'give {key} as 27 or "0x1b"'
        )
    return parse_fn(str(raw))


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice is an error, not last-wins."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json(text: str, source: str, online: Callable[[], list[int]]) -> list[Op]:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise UsageError(f"{source}:{e.lineno}:{e.colno}: invalid JSON", e.msg, "fix the syntax") from None
    except _DuplicateKey as e:
        raise UsageError(f'{source}: key "{e.args[0]}" given twice', "in one JSON object", "give it once") from None
    except RecursionError:
        raise UsageError(
            f"{source}: malformed batch", "the JSON is nested too deeply", 'write a list of ops: [{"op": "read", ...}]'
        ) from None
    if isinstance(data, dict):
        data = data.get("ops", [data])
    if not isinstance(data, list):
        raise UsageError(
            f"{source}: malformed batch", "JSON input must be a list of ops", 'write [{"op": "read", ...}]'
        )
    ops: list[Op] = []
    for number, item in enumerate(data, 1):
        where = f"{source}: op {number}"
        try:
            ops.extend(_json_op(item, where, online))
        except UsageError as e:
            raise e.at(where) from None
    return ops


def _json_op(item: Any, where: str, online: Callable[[], list[int]]) -> list[Op]:
    if not isinstance(item, dict) or not isinstance(item.get("op"), str):
        raise UsageError(
            "malformed op", 'each op is an object with an "op" string', 'write {"op": "read", "msr": "0x10"}'
        )
    kind = item["op"].lower()
    if kind not in KINDS:
        raise _unknown_op(item["op"])
    needed = {"read": ["msr"], "write": ["msr", "value"]}.get(kind, [])
    known = {"op", "cpu", "cpus", *needed, *(["mask"] if kind == "write" else [])}
    for key in needed:
        if key not in item:
            raise UsageError(f'{kind} needs "{key}"', "missing in this op", f'add "{key}": ...')
    for key in item:
        if key not in known:
            raise UsageError(
                f'unexpected key "{key}"', f"{kind} does not take it", f"keys here: {', '.join(sorted(known))}"
            )
    if kind in ("nop", "stop"):
        return [Op(kind, 0, where=where)]
    msr = _field(item, "msr", parse_msr) if "msr" in item else 0
    value = _field(item, "value", parse_value) if "value" in item else 0
    mask = _field(item, "mask", lambda s: parse_value(s, "mask")) if "mask" in item else None
    cpus = [0]
    if "cpu" in item and "cpus" in item:
        raise UsageError('both "cpu" and "cpus"', "they mean the same", 'give one: "cpus": "0-3"')
    spec = item.get("cpus", item.get("cpu"))
    if spec == []:
        raise UsageError(f"empty CPU list {json.dumps(spec)}", "the op would run nowhere", 'give CPUs: "cpus": [0, 1]')
    if isinstance(spec, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in spec):
            raise UsageError(
                f"malformed cpus {json.dumps(spec)}", "a CPU list holds integers", 'write "cpus": [0, 1] or "0-1"'
            )
        cpus = parse_cpus(",".join(map(str, spec))) if spec else []
    elif isinstance(spec, (int, str)) and not isinstance(spec, bool):
        cpus = _cpus(str(spec), online)
    elif spec is not None:
        raise UsageError(
            f"malformed cpu {json.dumps(spec)}", "expected a number, list or string", 'write "cpu": 0 or "cpus": "0-3"'
        )
    return [Op(kind, cpu, msr, value, mask, where) for cpu in cpus]
