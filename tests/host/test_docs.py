"""README.md and docs/*.md: every relative link and anchor resolves, every page is linked
from the README (so the packages ship it), and the benchmark tables are the committed results."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
sys.path.insert(0, str(REPO / "bench"))
import run  # noqa: E402
import sampler  # noqa: E402


def prose(text: str) -> str:
    """The text outside fenced code blocks (a `[x](y)` in code is not a link)."""
    return "".join(part for i, part in enumerate(re.split(r"^```.*$", text, flags=re.M)) if i % 2 == 0)


def anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    bad = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            bad.append(f"{target}: no heading with that anchor")
    assert not bad, bad


def test_the_readme_links_every_docs_page() -> None:
    """debian/*.docs ship what the README links (test_packaging), so every page must be linked."""
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", (REPO / "README.md").read_text()))
    assert {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")} <= linked


def test_the_anchor_rules() -> None:
    page = REPO / "docs" / "cli.md"
    assert {"without-msrdrv-the-kernels-msr-driver", "errors-and-exit-codes", "load--unload"} <= anchors(page)


def between(text: str, start: str, end: str) -> str:
    assert text.count(start) == 1 and text.count(end) == 1, (start, end)
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_benchmark_tables_are_the_committed_results() -> None:
    """bench/run.py and bench/sampler.py rewrite these tables in docs/benchmarks.md."""
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    results = (REPO / "bench" / "results" / "results.md").read_text()
    table = between(doc, run.README_START + "\n", run.README_END)
    assert table in (results, results + "\n![cost per MSR read](../bench/results/results.png)\n")
    samp = (REPO / "bench" / "results" / "sampler.md").read_text()
    assert between(doc, sampler.README_START + "\n", sampler.README_END) == samp.split("\n\n", 1)[1]
    readme = (REPO / "README.md").read_text()
    assert run.README_START not in readme and sampler.README_START not in readme


@pytest.mark.parametrize("module", [run, sampler], ids=["run", "sampler"])
def test_the_bench_scripts_write_docs_benchmarks(module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\n{module.README_START}\nold\n{module.README_END}\nafter\n")
    monkeypatch.setattr(module, "REPO", tmp_path)
    module.update_docs("| new |\n")
    assert page.read_text() == f"# Benchmarks\n\n{module.README_START}\n| new |\n{module.README_END}\nafter\n"


# Repository paths and msrctl module paths that a page names, in prose or code.
DOC_FILES = [*PAGES, REPO / "bench" / "README.md", *sorted((REPO / "msrctl").rglob("*.py"))]
REPO_PATH = re.compile(r"(?<![\w./-])((?:msrctl|dkms|tests|bench|debian|docs|udev)/[\w.*/-]*[\w*])")
MODULE_PATH = re.compile(r"(?<![\w./-])(msrctl(?:\.[A-Za-z_]\w*)+)")
NOT_MODULES = re.compile(r"\.(yml|yaml|json|j2|md|py|service|rules)$")


def named_paths(text: str) -> list[str]:
    return [p for p in REPO_PATH.findall(text) if not p.startswith(("docs/examples/generated",))]


def resolves(dotted: str) -> bool:
    """msrctl.a.b.C: the longest importable module, then attributes."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def built(paths: list[str]) -> set[str]:
    """The paths git ignores: build products (dkms/msrdrv.ko), which a fresh clone lacks."""
    import subprocess

    if not paths:
        return set()
    try:
        res = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], input="\n".join(paths), cwd=REPO,
                             capture_output=True, text=True, check=False)  # fmt: skip
    except OSError:  # no git (the package build's chroot)
        res = None
    if res is None or res.returncode not in (0, 1):  # not a git checkout: only the module is known to be built
        return {p for p in paths if p.endswith(".ko")}
    return set(res.stdout.split())


@pytest.mark.parametrize("page", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_file_and_module_exists(page: Path) -> None:
    """A page (or a module's comment) that names a file or a module that moved is out of date."""
    text = page.read_text()
    missing = [p for p in named_paths(text) if not list(REPO.glob(p.rstrip("/")))]
    missing = [p for p in missing if p not in built(missing)]
    missing += [m for m in MODULE_PATH.findall(text) if not NOT_MODULES.search(m) and not resolves(m)]
    assert not missing, missing


def test_build_products_are_not_missing_files() -> None:
    assert built(["dkms/msrdrv.ko", "msrctl/cli.py"]) == {"dkms/msrdrv.ko"}


def test_the_path_check_sees_a_moved_file() -> None:
    text = "see `msrctl/cli.py` and msrctl.device.Batch, not dkms/msrdrv_main.c or msrctl.device.msrdrv.Batch"
    assert [p for p in named_paths(text) if not list(REPO.glob(p))] == ["msrctl/cli.py"]
    assert [m for m in MODULE_PATH.findall(text) if not resolves(m)] == ["msrctl.device.Batch"]
