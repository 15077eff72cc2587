"""Binder: the badge opens lesson 01 in JupyterLab, and binder/ is what repo2docker reads.

The full check (a fresh venv from binder/requirements.txt, postBuild, lesson 01 under
nbval) is ``bash scripts/check_binder.sh``; .ci/run runs it when time allows.
"""

import os
import re
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
LESSON_01 = "notebooks/01_change_of_variables.ipynb"


def _badge_url() -> str:
    readme = (ROOT / "README.md").read_text()
    badge = re.search(r"\[!\[Binder\]\([^)]*\)\]\((https://mybinder\.org/v2/gh/[^)\s]+)\)", readme)
    assert badge, "README has no Binder badge linking to mybinder.org/v2/gh/..."
    return badge.group(1)


def test_badge_opens_lesson_01_in_jupyterlab():
    url = urlparse(_badge_url())
    assert url.scheme == "https" and url.netloc == "mybinder.org"
    parts = url.path.split("/")
    # /v2/gh/<owner>/<repo>/<ref>
    assert parts[1:3] == ["v2", "gh"] and len(parts) == 6 and all(parts[3:]), url.path
    query = parse_qs(url.query)
    assert query.get("urlpath") == [f"lab/tree/{LESSON_01}"], query
    assert (ROOT / LESSON_01).exists() or not any((ROOT / "notebooks").glob("01_*.ipynb")), \
        "the badge points at a lesson 01 file name that does not exist"


def test_binder_has_what_repo2docker_reads():
    for name in ("requirements.txt", "postBuild", "runtime.txt"):
        assert (BINDER / name).is_file(), f"binder/{name} is missing"
    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "binder/postBuild must be executable"
    assert os.access(post_build, os.X_OK)
    assert post_build.read_text().startswith("#!"), "postBuild needs a shebang line"


def test_binder_runtime_matches_the_package():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"runtime.txt should read like python-3.11, got {runtime!r}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(match.group(1)) in SpecifierSet(requires), (runtime, requires)


def test_binder_requirements_install_without_the_extra_index():
    """What scripts/check_binder.sh installs: every line but the index one is a pin."""
    lines = [line.split("#", 1)[0].strip() for line in
             (BINDER / "requirements.txt").read_text().splitlines()]
    options = [line for line in lines if line.startswith("-")]
    assert all(line.startswith("--extra-index-url") for line in options), options
    pins = [Requirement(line) for line in lines if line and not line.startswith("-")]
    assert pins and all(str(p.specifier).startswith("==") for p in pins)
    assert "playwright" in {p.name for p in pins}
