"""The figures script regenerates every figure, and the hero flow is a real flow."""

import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import flowkit.widgets
from flowkit.figures import hero_flow, set_progress


def _lessons_with_figures() -> list[str]:
    names = []
    for module in pkgutil.iter_modules(flowkit.widgets.__path__):
        if module.name.startswith("lesson") and module.name[6:].isdigit():
            source = (flowkit.widgets.__path__[0] + f"/{module.name}.py")
            if "def lesson_figure" in open(source).read():
                names.append(module.name)
    return sorted(names)


def _assert_real_image(path, min_size=(200, 150)):
    assert path.exists(), f"{path.name} was not written"
    assert path.stat().st_size > 5_000, f"{path.name} is suspiciously small"
    with Image.open(path) as image:
        assert image.width >= min_size[0] and image.height >= min_size[1], (path.name, image.size)
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 10, f"{path.name} is (nearly) one flat colour"


@pytest.fixture(scope="module")
def figures_dir(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("figures")
    result = subprocess.run([sys.executable, "-m", "flowkit.figures", str(outdir)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return outdir


def test_hero_and_animation_are_written(figures_dir):
    _assert_real_image(figures_dir / "hero.png", min_size=(1000, 250))
    gif = figures_dir / "flow_deforming.gif"
    _assert_real_image(gif)
    with Image.open(gif) as image:
        assert image.n_frames >= 20
        first = np.asarray(image.convert("RGB"), dtype=float)
        image.seek(image.n_frames // 2)
        middle = np.asarray(image.convert("RGB"), dtype=float)
    assert np.abs(first - middle).mean() > 1, "the animation does not move"
    assert gif.stat().st_size < 2_000_000, "keep the GIF light for the README"


def test_every_lesson_figure_is_written(figures_dir):
    lessons = _lessons_with_figures()
    assert lessons, "no flowkit/widgets/lessonNN.py defines lesson_figure(): nothing was tested"
    for name in lessons:
        _assert_real_image(figures_dir / f"{name}.png")


def test_hero_flow_is_identity_at_zero_and_its_density_integrates_to_one():
    flow = hero_flow()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    set_progress(flow, 0.0)
    with torch.no_grad():
        z, log_abs_det = flow(x)
    assert torch.allclose(z, x) and torch.allclose(log_abs_det, torch.zeros(64))

    set_progress(flow, len(flow))
    line = torch.linspace(-9, 9, 601)
    yy, xx = torch.meshgrid(line, line, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], 1).double()
    with torch.no_grad():
        mass = flow.double().log_prob(points).exp().sum().item() * (line[1] - line[0]).item() ** 2
        z, _ = flow(x.double())
        back, _ = flow.inverse(z)
    assert mass == pytest.approx(1.0, abs=2e-3)
    assert torch.allclose(back, x.double(), atol=1e-10)
