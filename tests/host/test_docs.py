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
