"""What `pip install batchgen-images` would get: the wheel built from this tree.

The sdist and the wheel are built once, offline (no build isolation: the setuptools of
the test extra), from a copy of the project, and these tests read their metadata and
file lists: the distribution name, the license, the console script, the dependency
bounds, PEP 561's py.typed, and an sdist that carries the tests. A few seconds in all.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import batchgen
from batchgen.cli import main

DIST = "batchgen-images"  # `batchgen` on the package index is somebody else's project
ROOT = Path(__file__).resolve().parent.parent
RUNTIME = {"aiohttp", "pyyaml", "tqdm", "pandas", "openpyxl", "pillow", "numpy"}
MODULE_OF = {"pyyaml": "yaml", "pillow": "PIL"}  # distribution → the module it imports
NOT_COPIED = shutil.ignore_patterns(".git", "output", "build", "dist", "*.egg-info",
                                    "__pycache__", ".hypothesis", ".*_cache", ".venv*")


class Wheel:
    def __init__(self, path: Path):
        self.path = path
        with zipfile.ZipFile(path) as zf:
            self.files = set(zf.namelist())
            self.info = next(n.split("/")[0] for n in self.files
                             if n.endswith(".dist-info/METADATA"))
            self.metadata = email.parser.Parser().parsestr(
                zf.read(f"{self.info}/METADATA").decode())
            self.entry_points = zf.read(f"{self.info}/entry_points.txt").decode()
            self.license = zf.read(f"{self.info}/licenses/LICENSE").decode() \
                if f"{self.info}/licenses/LICENSE" in self.files else None

    def requirements(self) -> list[Requirement]:
        return [Requirement(r) for r in self.metadata.get_all("Requires-Dist") or []]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the project without caches or outputs (a build writes into its tree)."""
    src = tmp_path_factory.mktemp("build") / "src"
    shutil.copytree(ROOT, src, ignore=NOT_COPIED)
    return src


@pytest.fixture(scope="module")
def sdist(source) -> set[str]:
    """The names in the sdist, relative to its top folder."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                               "print(b.build_sdist(sys.argv[1]))", str(source.parent / "sd")],
        cwd=source, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = source.parent / "sd" / done.stdout.split()[-1]
    with tarfile.open(path) as tf:
        return {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}


@pytest.fixture(scope="module")
def wheel(source) -> Wheel:
    tmp, src = source.parent, source
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp / "out"), str(src)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"the wheel did not build (does this environment have the test extra's "
        f"setuptools? pip install -e '.[test]'):\n{done.stdout}\n{done.stderr}")
    built = list((tmp / "out").glob("*.whl"))
    assert len(built) == 1, built
    return Wheel(built[0])


def test_the_distribution_is_batchgen_images_and_the_package_and_command_batchgen(wheel):
    assert wheel.metadata["Name"] == DIST
    assert wheel.path.name == f"batchgen_images-{wheel.metadata['Version']}-py3-none-any.whl"
    assert "[console_scripts]\nbatchgen = batchgen.cli:main" in wheel.entry_points
    top_level = {name.split("/")[0] for name in wheel.files if "/" in name}
    assert top_level == {"batchgen", wheel.info}  # no tests/, bench/, jobs/ or docs/


def test_every_module_and_py_typed_are_in_the_wheel(wheel):
    sources = {f"batchgen/{p.name}" for p in (ROOT / "batchgen").glob("*.py")}
    assert sources <= wheel.files
    assert "batchgen/py.typed" in wheel.files  # PEP 561: type checkers use our hints
    assert not any(n.endswith((".pyc", ".csv", ".tsv", ".yaml")) for n in wheel.files)


def test_the_mit_license_travels_with_the_wheel(wheel):
    assert wheel.metadata["License-Expression"] == "MIT"
    assert wheel.metadata["License-File"] == "LICENSE"
    assert wheel.license == (ROOT / "LICENSE").read_text()
    assert wheel.license.startswith("MIT License\n\nCopyright (c) 2026 the batchgen authors\n")


def test_index_page_facts(wheel):
    """Python versions, platforms and addresses the package index shows."""
    assert wheel.metadata["Requires-Python"] == ">=3.10"
    classifiers = set(wheel.metadata.get_all("Classifier"))
    assert "Operating System :: OS Independent" in classifiers  # SPEC §8 P1
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)} \
        <= classifiers
    assert "Typing :: Typed" in classifiers and "Environment :: Console" in classifiers
    urls = dict(u.split(", ", 1) for u in wheel.metadata.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Documentation", "Issues"}
    assert all(u.startswith("https://") for u in urls.values())


def test_every_runtime_dependency_has_a_lower_bound_and_no_other_is_declared(wheel):
    runtime = [r for r in wheel.requirements() if r.marker is None]
    assert {r.name.lower() for r in runtime} == RUNTIME  # aiolimiter is gone
    for req in runtime:
        assert any(spec.operator == ">=" for spec in req.specifier), req
        assert not any(spec.operator in ("<", "<=", "==") for spec in req.specifier), req
    extras = {r.name.lower() for r in wheel.requirements() if r.marker is not None}
    assert {"pytest", "hypothesis", "setuptools"} <= extras


def test_the_code_imports_exactly_the_declared_third_party_modules():
    """Scanned from the source: a new import needs a dependency line, and a
    dependency nothing imports any more (aiolimiter) must go. openpyxl is the
    exception: pandas loads it by name to read .xlsx."""
    imported = set()
    for path in (ROOT / "batchgen").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "batchgen"}
    declared = {MODULE_OF.get(name, name) for name in RUNTIME}
    assert third_party == declared  # openpyxl too: .xlsx is streamed with it directly


def test_the_version_is_the_installed_distributions():
    assert batchgen.__version__ == importlib.metadata.version(DIST) != "0.0.0"
    scripts = [ep for ep in importlib.metadata.distribution(DIST).entry_points
               if ep.group == "console_scripts"]
    assert [(ep.name, ep.value) for ep in scripts] == [("batchgen", "batchgen.cli:main")]
    assert scripts[0].load() is main


def test_the_sdist_carries_the_package_the_tests_bench_and_jobs_and_no_bytecode(source, sdist):
    """Enough to run the test suite from an unpacked sdist (downstream packagers do)."""
    wanted = {p.relative_to(source).as_posix()
              for folder in ("batchgen", "tests", "bench", "jobs")
              for p in (source / folder).rglob("*") if p.is_file()}
    assert wanted <= sdist, sorted(wanted - sdist)
    assert {"LICENSE", "README.md", "pyproject.toml", "PKG-INFO"} <= sdist
    assert not any("__pycache__" in n or n.startswith("output/") for n in sdist)
