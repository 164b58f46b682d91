"""msrctl's imports point only down its layers, and no import cycle exists.

The graph is read from the sources (every import statement, those inside
functions included, since a lazy import is still a dependency), not from what
one run happens to load.  Layers, top to bottom (docs/architecture.md):

    cli -> exporter -> telemetry -> ksampler | admin | perf -> decode -> device -> registers -> errors, _version
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "msrctl"

# Top to bottom; wings in one row stand side by side.
LAYERS: list[set[str]] = [
    {"cli"},
    {"exporter"},
    {"telemetry"},
    {"ksampler", "admin", "perf"},
    {"decode"},
    {"device"},
    {"registers"},
    {"errors", "_version"},
]
# Imports between wings of one row that are allowed, each with its reason.
ALONGSIDE = {
    ("admin", "perf"): "`msrctl status` reports the PMU that `msrctl stat` counts with (perf.pmu)",
}
# The package's own entry files, above every layer.
ROOT = {"msrctl", "msrctl.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The msrctl modules that module name imports: `from .x import y` counts as x.y where
    y is a module, else as x."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "msrctl"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "msrctl":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found |= subs or {target}
            if len(subs) < len(node.names):
                found.add(target)
    return found & known - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank(w: str) -> int:
    return next(i for i, row in enumerate(LAYERS) if w in row)


def layer_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in sorted(g.items()):
        if src in ROOT:
            continue
        for dst in sorted(targets):
            a, b = wing(src), wing(dst)
            if dst == "msrctl" or dst.startswith("msrctl.__main__"):
                bad.append(f"{src} imports {dst}, the package's entry")
            elif a == b or dst in ROOT:
                continue
            elif rank(a) > rank(b) or (rank(a) == rank(b) and (a, b) not in ALONGSIDE):
                bad.append(f"{src} ({a}) imports {dst} ({b}), which is not below it")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_every_wing_has_a_layer() -> None:
    wings = {wing(m) for m in modules() if m not in ROOT}
    placed = set().union(*LAYERS)
    assert wings <= placed, f"wings without a layer: {sorted(wings - placed)}"
    assert not placed - wings, f"layers name wings that do not exist: {sorted(placed - wings)}"


def test_imports_point_down_the_layers() -> None:
    assert layer_violations(graph()) == []


def test_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_only_shared_leaves_stay_at_the_top() -> None:
    top = {p.name for p in PKG.glob("*.py")}
    assert top == {"__init__.py", "__main__.py", "errors.py", "_version.py"}


def test_every_module_says_its_job() -> None:
    silent = [
        m
        for m, p in modules().items()
        if not ast.get_docstring(ast.parse(p.read_text())) and m != "msrctl.device._abi_cffi"
    ]
    assert silent == []


# The checks themselves, on small graphs with a known answer.


def test_the_checks_catch_an_upward_import_a_sideways_one_and_a_cycle() -> None:
    g = {
        "msrctl.registers.table": {"msrctl.cli.main"},  # up
        "msrctl.ksampler.sampler": {"msrctl.admin.system"},  # sideways, not allowed
        "msrctl.admin.status": {"msrctl.perf.pmu"},  # sideways, allowed
        "msrctl.cli.main": {"msrctl.device.ops"},  # down
        "msrctl.registers.names": {"msrctl.registers.parse"},
        "msrctl.registers.parse": {"msrctl.registers.names"},  # a cycle within a wing
    }
    assert layer_violations(g) == [
        "msrctl.ksampler.sampler (ksampler) imports msrctl.admin.system (admin), which is not below it",
        "msrctl.registers.table (registers) imports msrctl.cli.main (cli), which is not below it",
    ]
    assert cycles(g) == [["msrctl.registers.names", "msrctl.registers.parse"]]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from . import parse, UsageError", {"msrctl.registers.parse", "msrctl.registers"}),
        ("from ..device.msrdrv import Device", {"msrctl.device.msrdrv"}),
        ("def f():\n    from ..admin import diagnose\n", {"msrctl.admin.diagnose"}),
        ("import msrctl.errors", {"msrctl.errors"}),
    ],
)
def test_imports_are_read_relative_to_the_module(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "table.py"
    path.write_text(source)
    known = {"msrctl.registers", "msrctl.registers.parse", "msrctl.device.msrdrv", "msrctl.admin.diagnose",
             "msrctl.errors", "msrctl.admin"}  # fmt: skip
    assert imports("msrctl.registers.table", path, known) == expected


def test_the_architecture_page_names_every_module() -> None:
    """docs/architecture.md's tree says each module's job: a module added or moved is listed there."""
    page = (PKG.parent / "docs" / "architecture.md").read_text()
    files = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py") if p.name not in ("__init__.py", "_abi_cffi.py")]
    assert [f for f in files if f not in page] == []
