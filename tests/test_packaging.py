"""The repository's promises: binder/ agrees with requirements.txt, the README has its commands."""

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> dict[str, Requirement]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        reqs[req.name.lower()] = req
    return reqs


def test_binder_pins_every_requirement_within_its_range():
    wanted = _requirements(ROOT / "requirements.txt")
    pinned = _requirements(ROOT / "binder" / "requirements.txt")
    assert set(wanted) == set(pinned), "binder/requirements.txt and requirements.txt list different packages"
    for name, req in wanted.items():
        spec = str(pinned[name].specifier)
        assert spec.startswith("=="), f"binder pin for {name} is not exact: {spec}"
        version = Version(spec[2:])
        assert req.specifier.contains(version, prereleases=True), f"{name} {version} is outside {req.specifier}"


def test_binder_torch_is_the_cpu_build():
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert "download.pytorch.org/whl/cpu" in text
    assert re.search(r"^torch==[\d.]+\+cpu$", text, re.M)
    assert "pip install" in (ROOT / "binder" / "postBuild").read_text()


def test_pyproject_dependencies_match_requirements():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirements(ROOT / "requirements.txt")
    for dep in project["dependencies"]:
        req = Requirement(dep)
        assert req.name.lower() in wanted
        assert str(req.specifier) == str(wanted[req.name.lower()].specifier), req.name


def test_readme_states_the_commands_and_the_badge():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"<!-- install -->\s*```bash\s*pip install -r requirements.txt && jupyter lab", readme)
    assert re.search(r"<!-- test -->\s*```bash\s*python -m pytest\s*```", readme)
    assert "download.pytorch.org/whl/cpu" in readme  # the CPU-only option
    badge = re.search(r"mybinder.org/v2/gh/[^)]*urlpath=lab/tree/notebooks/01_change_of_variables.ipynb", readme)
    assert badge, "the Binder badge must open lesson 01 in JupyterLab"
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"notebooks/{notebook.name}" in readme, f"README's lesson map lacks {notebook.name}"
