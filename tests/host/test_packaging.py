"""The Debian packaging agrees with the source: one version, one group, one rule.

dkms/VERSION is the version source (test_version.py); the Debian changelog
must carry the same upstream version with revision 1, dkms.conf must take
its version from the package (dh_dkms -V), the package dependencies must
match pyproject's, and the man pages and completion generated at build time
must cover the CLI.  Building and installing the .debs is `make deb` / `make test-deb`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "debian"
DEBIAN_PYTHON = "/usr/bin/python3"


def source_version() -> str:
    return (REPO / "dkms" / "VERSION").read_text().strip()


def control() -> list[dict[str, str]]:
    """debian/control as a list of paragraphs (field names lower-cased, continuations joined)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", (DEBIAN / "control").read_text().strip()):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            else:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        paragraphs.append(fields)
    return paragraphs


def relations(value: str) -> set[str]:
    """Package names in a Depends-style field, versions and substvars dropped."""
    names = set()
    for item in value.replace("\n", " ").split(","):
        for alt in item.split("|"):
            name = re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", alt).strip()
            if name and not name.startswith("${"):
                names.add(name)
    return names


def binary(name: str) -> dict[str, str]:
    found = [p for p in control()[1:] if p.get("package") == name]
    assert found, f"debian/control has no package {name}"
    return found[0]


def dkms_conf() -> dict[str, str]:
    values = {}
    for line in (REPO / "dkms" / "dkms.conf").read_text().splitlines():
        m = re.match(r'^([A-Z_]+(?:\[\d+\])?)="(.*)"$', line.strip())
        if m:
            values[m.group(1)] = m.group(2)
    return values


def upstream(version: str) -> str:
    """A Debian version without epoch and revision: what dkms/VERSION holds."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def test_debian_changelog_carries_the_source_version() -> None:
    """Only the upstream part must agree: the revision is the packager's (-1, -2, ~bpo, ...)."""
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    m = re.match(r"^msrdrv \((\S+)\) \S+; urgency=\S+$", first)
    assert m, first
    assert upstream(m.group(1)) == source_version()


@pytest.mark.parametrize(
    ("version", "up"),
    [("0.2.0-1", "0.2.0"), ("0.2.0-3~bpo12+1", "0.2.0"), ("1:0.2.0-1", "0.2.0"), ("0.2-rc1-2", "0.2-rc1")],
)
def test_upstream_part_of_a_debian_version(version: str, up: str) -> None:
    assert upstream(version) == up


def test_dkms_conf_takes_the_version_from_the_package() -> None:
    conf = dkms_conf()
    assert conf["PACKAGE_NAME"] == "msrdrv"
    assert conf["PACKAGE_VERSION"] == "#MODULE_VERSION#"  # dh_dkms -V puts the upstream version there
    assert conf["BUILT_MODULE_NAME[0]"] == "msrdrv"
    assert "${kernelver}" in conf["MAKE[0]"]
    assert (DEBIAN / "msrdrv-dkms.dkms").read_text().split() == ["dkms/dkms.conf"]
    assert re.search(r"^\s*dh_dkms -V\s*$", (DEBIAN / "rules").read_text(), re.M)


def test_the_dkms_source_tree_has_what_kbuild_needs() -> None:
    """debian/rules installs dkms/*.c, *.h, Kbuild, Makefile and VERSION ($(src)/VERSION)."""
    rules = (DEBIAN / "rules").read_text()
    for piece in ("dkms/Kbuild", "dkms/Makefile", "dkms/VERSION", "dkms/*.c", "dkms/*.h"):
        assert piece in rules, piece
    kbuild = (REPO / "dkms" / "Kbuild").read_text()
    objects = re.findall(r"(\w+)\.o", " ".join(re.findall(r"^msrdrv-y\s*[:+]?=(.*)$", kbuild, re.M)))
    assert objects
    for obj in objects:
        assert (REPO / "dkms" / f"{obj}.c").exists(), f"Kbuild builds {obj}.o but dkms/{obj}.c is missing"


def test_two_architecture_all_packages_from_source_msrdrv() -> None:
    source, *binaries = control()
    assert source["source"] == "msrdrv"
    assert {p["package"]: p["architecture"] for p in binaries} == {"msrdrv-dkms": "all", "msrctl": "all"}
    build_deps = relations(source["build-depends"])
    assert {"dh-sequence-dkms", "dh-sequence-python3", "pybuild-plugin-pyproject"} <= build_deps


def test_msrctl_dependencies_come_from_pyproject_and_the_tools_it_runs() -> None:
    """${python3:Depends} maps pyproject's dependencies (cffi to its backend, which the ABI
    mode needs alone); control adds only what Python cannot declare: kmod (modprobe, insmod,
    rmmod)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert names == {"typer", "cffi", "jinja2", "prometheus-client"}  # the last: msrctl exporter
    msrctl = binary("msrctl")
    assert "${python3:Depends}" in msrctl["depends"]
    assert relations(msrctl["depends"]) == {"kmod"}  # nothing ${python3:Depends} already gives
    overrides = dict(line.split()[:2] for line in (DEBIAN / "py3dist-overrides").read_text().splitlines()
                     if line.strip() and not line.startswith("#"))  # fmt: skip
    assert overrides == {"cffi": "python3-cffi-backend"}
    assert "import _cffi_backend" in (REPO / "msrctl" / "device" / "_abi_cffi.py").read_text()
    assert msrctl["recommends"] == "msrdrv-dkms (>= ${source:Version})"
    assert msrctl["provides"] == "python3-msrctl"
    assert project["scripts"]["msrctl"] == "msrctl.cli.main:main"


def test_the_udev_rule_and_the_created_group_agree() -> None:
    install = (DEBIAN / "msrdrv-dkms.install").read_text().split()
    assert install[:2] == ["udev/60-msrdrv.rules", "usr/lib/udev/rules.d/"]
    rule = (REPO / "udev" / "60-msrdrv.rules").read_text()
    group = re.search(r'GROUP="([^"]+)"', rule)
    assert group and 'MODE="0660"' in rule
    sysusers = [line.split() for line in (DEBIAN / "msrdrv-dkms.sysusers").read_text().splitlines()]
    assert ["g", group.group(1), "-", "-"] in sysusers
    assert "dh-sequence-installsysusers" in relations(control()[0]["build-depends"])


def test_the_modules_load_file_is_an_example_only() -> None:
    assert (DEBIAN / "msrdrv-dkms.examples").read_text().split() == ["debian/modules-load.d/msrdrv.conf"]
    lines = [x for x in (DEBIAN / "modules-load.d" / "msrdrv.conf").read_text().splitlines() if x and x[0] != "#"]
    assert lines == ["msrdrv"]
    assert "modules-load" not in (DEBIAN / "msrdrv-dkms.install").read_text()


def test_lintian_overrides_give_a_reason() -> None:
    for path in DEBIAN.glob("*lintian-overrides"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.startswith("#"):
                assert i > 0 and lines[i - 1].startswith("#"), f"{path.name}: override without a reason: {line}"


def debian_python_has_the_build_stack() -> bool:
    if not Path(DEBIAN_PYTHON).exists():
        return False
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import typer, click, click_man"], capture_output=True, check=False)
    return probe.returncode == 0


needs_the_build_stack = pytest.mark.skipif(
    not debian_python_has_the_build_stack(),
    reason="needs Debian's python3-typer and python3-click-man (the package build's stack)",
)


def generate_docs(out: Path, **env: str) -> dict[str, str]:
    """What debian/rules runs at build time, on Debian 12's typer 0.7, click and click-man: {page name: text}."""
    subprocess.run(
        [DEBIAN_PYTHON, "-P", str(DEBIAN / "gen-docs.py"), "--version", source_version(), "--outdir", str(out)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": "0", **env},
        check=True,
    )
    return {p.name: p.read_text() for p in sorted((out / "man").iterdir())}


def command_pages() -> dict[str, Any]:
    """The page each visible command should get, by file name: msrctl.1, msrctl-read.1, msrctl-allowlist-load.1, ..."""
    import typer.main

    from msrctl.cli.main import app

    pages: dict[str, Any] = {}

    def visit(cmd: Any, path: tuple[str, ...]) -> None:
        pages["-".join(path) + ".1"] = cmd
        names = cmd.list_commands(None) if hasattr(cmd, "list_commands") else []  # the root builds them on request
        for name in names:
            sub = cmd.get_command(None, name)
            if not sub.hidden:
                visit(sub, (*path, name))

    visit(typer.main.get_command(app), ("msrctl",))
    return pages


def roff_dashes(text: str) -> str:
    return text.replace("-", "\\-")


@needs_the_build_stack
def test_man_pages_and_completion_are_generated_from_the_cli(tmp_path: Path) -> None:
    man = generate_docs(tmp_path)
    expected = command_pages()
    # One page per command, no more, no fewer.
    assert set(man) == set(expected)
    assert {"msrctl.1", "msrctl-read.1", "msrctl-write.1", "msrctl-load.1", "msrctl-allowlist-load.1"} <= set(man)
    for name, cmd in expected.items():
        title = name[: -len(".1")].replace("-", " ").upper()
        assert man[name].startswith(f'.TH "{title}" "1" "1970-01-01" "msrctl {source_version()}" '), name
        # A group's page lists its commands and points at their pages.
        for sub, sub_cmd in getattr(cmd, "commands", {}).items():
            if not sub_cmd.hidden:
                assert f"\\fB{sub}\\fP\n" in man[name], (name, sub)
                assert f"\\fB{name[: -len('.1')]}-{sub}\\fP(1)" in man[name], (name, sub)
        # Each page documents its command's options under every name.
        for param in cmd.params:
            if param.param_type_name == "option" and not param.hidden:
                for opt in (*param.opts, *param.secondary_opts):
                    assert roff_dashes(opt) in man[name], (name, opt)
    assert ".SH EXIT STATUS\n" in man["msrctl.1"] and "\\fI/dev/msrdrv\\fR" in man["msrctl.1"]
    bash = shutil.which("bash")
    if bash is None:
        return
    completion = tmp_path / "bash-completion" / "msrctl"
    script = f"source {completion}; COMP_WORDS=(msrctl ''); COMP_CWORD=1; _msrctl; echo ${{COMPREPLY[@]}}"
    got = subprocess.run([bash, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert {"load", "status", "read", "write", "generate"} <= set(got), got


@needs_the_build_stack
def test_man_pages_are_dated_by_source_date_epoch(tmp_path: Path) -> None:
    """2023-11-14 22:13:20 UTC: already the 15th at UTC+14, still the 14th in the build's date."""
    man = generate_docs(tmp_path, SOURCE_DATE_EPOCH="1700000000", TZ="Pacific/Kiritimati")
    assert man
    for name, text in man.items():
        assert text.split("\n", 1)[0].split('" "')[2] == "2023-11-14", name


@needs_the_build_stack
def test_man_pages_and_completion_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """click keeps the help option's names in a set (seed 2 printed `--help, -h`); nothing may follow the seed."""
    outputs = []
    for seed in ("0", "1", "2", "3"):
        out = tmp_path / seed
        generate_docs(out, PYTHONHASHSEED=seed)
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert all(o == outputs[0] for o in outputs[1:])
    # Option names print in their declared order: short first.
    assert b"\\fB\\-p,\\fP \\-\\-cpu, \\-\\-processor CPUS\n" in outputs[0][Path("man/msrctl-read.1")]
    # The completion offers the help option's names, sorted.
    assert b" --help --hexadecimal " in outputs[0][Path("bash-completion/msrctl")]


def test_both_packages_ship_every_reference_page_the_readme_links() -> None:
    """The installed README's links to docs/ resolve: each package's docs carry every page."""
    linked = sorted(set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", (REPO / "README.md").read_text())))
    assert "docs/access-policy.md" in linked and "docs/telemetry.md" in linked
    for pkg in ("msrctl", "msrdrv-dkms"):
        assert (DEBIAN / f"{pkg}.docs").read_text().split() == ["README.md", *linked], pkg
    assert all((REPO / page).is_file() for page in linked)


def test_dkms_conf_clean_is_true() -> None:
    """dkms >= 3.1.8 warns on any other CLEAN on every build; older dkms runs it."""
    assert dkms_conf()["CLEAN"] == "true"


def test_no_inert_lintian_override() -> None:
    """package-supports-alternative-init-but-no-init.d-script is not emitted by bookworm's
    lintian for a unit like ours and is an unknown tag for newer lintian."""
    for path in DEBIAN.glob("*lintian-overrides"):
        assert "package-supports-alternative-init-but-no-init.d-script" not in path.read_text(), path.name


def test_copyright_gives_the_abi_header_its_syscall_note() -> None:
    spdx = (REPO / "dkms" / "msrdrv.h").read_text().splitlines()[0]
    assert "GPL-2.0 WITH Linux-syscall-note" in spdx
    stanzas = (DEBIAN / "copyright").read_text().split("\n\n")
    header = [st for st in stanzas if re.search(r"^Files:.*\bdkms/msrdrv\.h\b", st, re.M)]
    assert header, "no Files stanza for dkms/msrdrv.h"
    assert re.search(r"^License: GPL-2 with Linux-syscall-note exception$", header[0], re.M)


def test_allowlist_unit_runs_before_user_sessions() -> None:
    unit = (DEBIAN / "msrctl.msrdrv-allowlist.service").read_text()
    assert re.search(r"^Before=.*\bsystemd-user-sessions\.service\b", unit, re.M)


def test_the_wheel_carries_data_and_templates_without_setuptools_warnings(tmp_path: Path) -> None:
    """Built with bookworm's setuptools (what the package build uses) in a copy of the tree."""
    python = DEBIAN_PYTHON
    probe = subprocess.run([python, "-c", "import setuptools, wheel"], capture_output=True, check=False)
    if probe.returncode:
        pytest.skip(f"{python} has no setuptools and wheel (python3-setuptools, python3-wheel)")
    src = tmp_path / "src"
    shutil.copytree(REPO / "msrctl", src / "msrctl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    res = subprocess.run([python, "-W", "always", "-c", code, str(tmp_path / "dist")], cwd=src,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "would be ignored" not in res.stderr and "Package would be" not in res.stderr, res.stderr[-2000:]
    import zipfile

    names = set(zipfile.ZipFile(tmp_path / "dist" / res.stdout.split()[-1]).namelist())
    templates = {f"msrctl/templates/{p.name}" for p in (REPO / "msrctl/templates").glob("*.j2")}
    assert templates and templates <= names
    assert {"msrctl/data/registers.json", "msrctl/py.typed", "msrctl/cli/help.py"} <= names


def test_clean_removes_what_the_python_build_leaves() -> None:
    """setuptools writes msrctl.egg-info/ into the tree; `debian/rules clean` must remove it,
    or a second build (and any source build) finds unexpected upstream changes."""
    listed = [line.strip().rstrip("/") for line in (DEBIAN / "clean").read_text().splitlines()]
    assert "msrctl.egg-info" in listed


def test_the_package_build_runs_the_host_tests_unless_nocheck() -> None:
    rules = (DEBIAN / "rules").read_text()
    assert "PYBUILD_DISABLE = test" not in rules
    body = rules.split("override_dh_auto_test:", 1)[1].split("\n\n", 1)[0]
    assert "filter nocheck,$(DEB_BUILD_OPTIONS)" in body and "pytest" in body and "tests/host" in body
    assert "python3-pytest <!nocheck>" in control()[0]["build-depends"]
