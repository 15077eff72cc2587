"""Lesson 02: the explorers react to every control, and the checkers catch typical mistakes."""

import math

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backend_bases import MouseEvent  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson02 as ex  # noqa: E402
from flowkit.widgets import lesson02 as w  # noqa: E402


def shoelace(points):
    x, y = np.asarray(points)[:, 0], np.asarray(points)[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


# ----------------------------------------------------------------------------------
# Linear map explorer
# ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear():
    explorer = w.linear_map_explorer()
    yield explorer
    matplotlib.pyplot.close(explorer.figure)


def _linear_snapshot(explorer):
    art = explorer.artists
    return (np.array(art["density"].get_array()).copy(), art["parallelogram"].get_xy().copy(),
            art["info"].get_text())


def test_linear_explorer_every_slider_changes_the_picture(linear):
    linear.set(a=1.2, b=0.5, c=0.3, d=0.9)
    for name, value in (("a", 1.6), ("b", -0.4), ("c", 0.7), ("d", 1.1)):
        before = _linear_snapshot(linear)
        linear.controls[name].value = value
        after = _linear_snapshot(linear)
        assert not np.allclose(before[0], after[0]), f"density did not change with {name}"
        assert not np.allclose(before[1], after[1]), f"parallelogram did not change with {name}"
        assert before[2] != after[2]


@pytest.mark.parametrize("entries", [(1.2, 0.5, 0.3, 0.9), (-0.5, 0.6, 0.7, 0.4), (0.6, 0.0, 0.0, 0.25),
                                     (0.0, 0.8, 1.0, 0.0)])
def test_linear_explorer_area_is_det_and_density_is_normalised(linear, entries):
    # Entries chosen so that the mass outside the plotted square [-4, 4]^2 is negligible.
    a, b, c, d = entries
    linear.set(a=a, b=b, c=c, d=d)
    det = a * d - b * c
    assert shoelace(linear.artists["parallelogram"].get_xy()[:4]) == pytest.approx(abs(det), abs=1e-12)
    assert f"|det A| = {abs(det):.4f}" in linear.artists["info"].get_text()
    assert ("flipped" in linear.artists["info"].get_text()) == (det < 0)
    density = np.array(linear.artists["density"].get_array())
    extent = linear.artists["density"].get_extent()
    n = density.shape[0]
    cell = ((extent[1] - extent[0]) / (n - 1)) ** 2
    assert density.sum() * cell == pytest.approx(1.0, abs=2e-3)
    assert density.max() <= 1 / (2 * math.pi * abs(det)) + 1e-12


def test_linear_explorer_density_matches_the_flow(linear):
    linear.set(a=1.3, b=-0.6, c=0.45, d=0.8)
    A = torch.tensor([[1.3, -0.6], [0.45, 0.8]])
    flow = fk.Flow([fk.Linear(A, learnable=False).inv], fk.StandardNormal(2))
    extent = linear.artists["density"].get_extent()
    density = np.array(linear.artists["density"].get_array())
    n = density.shape[0]
    xs = torch.linspace(extent[0], extent[1], n)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    with torch.no_grad():
        expected = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    np.testing.assert_allclose(density, expected.reshape(n, n).numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("entries", [(1.0, 1.0, 1.0, 1.0), (0.15, 0.3, 0.1, 0.2), (0.0, 0.0, 0.0, 0.0),
                                     (0.6, -1.8, 0.2, -0.6)])
def test_linear_explorer_singular_matrix_shows_a_message(linear, entries):
    a, b, c, d = entries
    linear.set(a=a, b=b, c=c, d=d)  # must not raise
    art = linear.artists
    assert art["message"].get_visible()
    assert "det A = 0" in art["message"].get_text()
    assert not art["density"].get_visible()
    assert "infinite" in art["info"].get_text()
    linear.set(a=1.0, b=0.2, c=0.0, d=1.0)  # and it recovers
    assert not art["message"].get_visible() and art["density"].get_visible()
    assert np.isfinite(np.array(art["density"].get_array())).all()


def test_pushforward_flow_refuses_float32_roundoff_singular_matrices():
    # 0.15 * 0.2 - 0.3 * 0.1 is 0 exactly, but not in float32; fk.Linear alone lets it pass.
    with pytest.raises(ValueError, match="singular"):
        w.pushforward_flow([[0.15, 0.3], [0.1, 0.2]])
    flow = w.pushforward_flow([[2.0, 0.0], [0.0, 0.5]])
    assert flow.log_prob(torch.zeros(1, 2)).item() == pytest.approx(-math.log(2 * math.pi))


# ----------------------------------------------------------------------------------
# Jacobian explorer
# ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jac():
    explorer = w.jacobian_explorer()
    yield explorer
    matplotlib.pyplot.close(explorer.figure)


def _jac_snapshot(explorer):
    art = explorer.artists
    return {name: np.array(art[name].get_xydata()).copy()
            for name in ("circle", "image", "linear", "zoom_image", "zoom_linear")}


def test_jacobian_explorer_every_control_changes_the_picture(jac):
    jac.set(map="radial", x0=0.8, y0=0.4, radius=0.4)
    moves = {"x0": 0.2, "y0": -1.0, "radius": 0.7}
    for name, value in moves.items():
        before = _jac_snapshot(jac)
        jac.controls[name].value = value
        after = _jac_snapshot(jac)
        assert not np.allclose(before["circle"], after["circle"]), name
        assert not np.allclose(before["image"], after["image"]), name
        assert not np.allclose(before["linear"], after["linear"]), name
    heat_before = np.array(jac.artists["heat"].get_array()).copy()
    before = _jac_snapshot(jac)
    jac.controls["map"].value = "coupling"
    assert not np.allclose(heat_before, np.array(jac.artists["heat"].get_array()))
    assert not np.allclose(before["image"], _jac_snapshot(jac)["image"])
    jac.controls["map"].value = "radial"


@pytest.mark.parametrize("name", sorted(w.EXAMPLE_MAPS))
def test_jacobian_explorer_small_circle_area_ratio_is_det_j(jac, name):
    jac.set(map=name, x0=0.75, y0=-0.45, radius=0.05)
    state = jac.artists["state"]
    x0 = torch.tensor([[0.75, -0.45]], dtype=torch.float64)
    det = torch.linalg.det(fk.jacobian(w.EXAMPLE_MAPS[name][0], x0)[0]).item()
    assert state["det"] == pytest.approx(det, rel=1e-4)
    assert state["area_ratio"] == pytest.approx(abs(det), rel=1e-2)
    # Zoomed in, the true image is the ellipse J u up to O(r).
    art = jac.artists
    gap = np.abs(art["zoom_image"].get_xydata() - art["zoom_linear"].get_xydata()).max()
    assert gap < 0.1
    assert f"det J = {det:.3f}" in art["readout"].get_text()


def test_jacobian_explorer_heat_map_is_log_det(jac):
    jac.set(map="swirl")
    assert np.abs(np.array(jac.artists["heat"].get_array())).max() < 1e-4  # area preserving
    jac.set(map="coupling")
    heat = np.array(jac.artists["heat"].get_array())
    extent = jac.artists["heat"].get_extent()
    xs = np.linspace(extent[0], extent[1], heat.shape[1])
    np.testing.assert_allclose(heat[0], 0.5 * np.sin(1.5 * xs), atol=1e-5)  # log|det| = s(x1)
    jac.set(map="radial")
    centre = heat.shape[0] // 2
    assert np.array(jac.artists["heat"].get_array())[centre, centre] == pytest.approx(
        2 * math.log(2), abs=0.01)


def test_jacobian_explorer_point_follows_a_drag(jac):
    fig = jac.figure
    ax = fig.axes[0]
    fig.canvas.draw()
    px, py = ax.transData.transform((-1.2, 1.05))
    fig.canvas.callbacks.process("button_press_event",
                                 MouseEvent("button_press_event", fig.canvas, px, py, button=1))
    assert jac.controls["x0"].value == pytest.approx(-1.2)
    assert jac.controls["y0"].value == pytest.approx(1.05)
    assert jac.artists["point"].get_xydata()[0] == pytest.approx([-1.2, 1.05])
    px, py = ax.transData.transform((0.5, -0.5))
    fig.canvas.callbacks.process("motion_notify_event",
                                 MouseEvent("motion_notify_event", fig.canvas, px, py))
    fig.canvas.callbacks.process("button_release_event",
                                 MouseEvent("button_release_event", fig.canvas, px, py, button=1))
    assert jac.artists["point"].get_xydata()[0] == pytest.approx([0.5, -0.5])
    px, py = ax.transData.transform((1.0, 1.0))
    fig.canvas.callbacks.process("motion_notify_event",  # released: no longer follows
                                 MouseEvent("motion_notify_event", fig.canvas, px, py))
    assert jac.artists["point"].get_xydata()[0] == pytest.approx([0.5, -0.5])


def test_example_maps_and_analytic_jacobian():
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(w.radial_map_jacobian(x), fk.jacobian(w.radial_map, x))
    swirl = fk.log_abs_det_jacobian(w.swirl_map, x)
    torch.testing.assert_close(swirl, torch.zeros_like(swirl), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="map_name"):
        w.jacobian_explorer("nope")


def test_lesson_figure():
    fig = w.lesson_figure()
    assert len(fig.axes) >= 4
    matplotlib.pyplot.close(fig)


# ----------------------------------------------------------------------------------
# Exercises
# ----------------------------------------------------------------------------------


def _not_implemented(*args):
    raise NotImplementedError


def _det(A):
    return A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]


def check(exercise, fn):
    return exercise.check(fn, show=False)


def assert_slips(exercise, cases):
    for needle, fn in cases.items():
        result = check(exercise, fn)
        assert not result.passed, needle
        assert needle in str(result), (needle, str(result))
        if needle != "Not attempted":
            assert str(result).startswith("Not yet"), str(result)


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_every_reference_passes_and_the_template_is_not_attempted(exercise):
    assert check(exercise, exercise.reference).passed, str(check(exercise, exercise.reference))
    template = check(exercise, _not_implemented)
    assert template.status == "not attempted" and str(template).startswith("Not attempted yet")
    assert "def " in exercise.solution_code() and exercise.hints


def test_summary_lists_every_exercise(capsys):
    rows = ex.summary()
    assert [name for name, _ in rows] == [e.name for e in ex.EXERCISES]
    assert "exercises passed" in capsys.readouterr().out


def test_det_2x2_slips():
    assert check(ex.det_2x2, lambda A: math.log(abs(_det(A).item()))).passed  # floats ok
    assert_slips(ex.det_2x2, {
        "absolute value": lambda A: torch.log(_det(A)),
        "take its log": lambda A: torch.abs(_det(A)),
        "minus sign": lambda A: torch.log(torch.abs(A[0, 0] * A[1, 1] + A[0, 1] * A[1, 0])),
        "only the diagonal": lambda A: torch.log(torch.abs(A[0, 0] * A[1, 1])),
        "inverse matrix": lambda A: -torch.log(torch.abs(_det(A))),
        "forget `return`": lambda A: None,
        "single number": lambda A: torch.log(torch.abs(A)),
        "raised ZeroDivisionError": lambda A: 1 / 0,
        "return a number": lambda A: "log det",
        "rules out": lambda A: torch.linalg.slogdet(A).logabsdet,
    })


def _gaussian_reference(x, A, b):
    z = torch.linalg.solve(A, (x - b).T).T
    return -0.5 * (z * z).sum(1) - math.log(2 * math.pi) - torch.linalg.slogdet(A).logabsdet


def test_linear_gaussian_slips():
    log2pi = math.log(2 * math.pi)

    def base(z):
        return -0.5 * (z * z).sum(1) - log2pi

    def logdet(A):
        return torch.linalg.slogdet(A).logabsdet

    assert check(ex.linear_gaussian, _gaussian_reference).passed
    assert_slips(ex.linear_gaussian, {
        "sign of the log-det": lambda x, A, b: base(torch.linalg.solve(A, (x - b).T).T) + logdet(A),
        "forget the log-det": lambda x, A, b: base(torch.linalg.solve(A, (x - b).T).T),
        "not forward": lambda x, A, b: base((x - b) @ A.T) - logdet(A),
        "subtract the shift": lambda x, A, b: base(x @ torch.linalg.inv(A).T) - logdet(A),
        "without the transpose": lambda x, A, b: base((x - b) @ torch.linalg.inv(A)) - logdet(A),
        "off by log 2 pi": lambda x, A, b: _gaussian_reference(x, A, b) + log2pi,
        "the 1-D one": lambda x, A, b: _gaussian_reference(x, A, b) + 0.5 * log2pi,
        "shape (batch,)": lambda x, A, b: _gaussian_reference(x, A, b)[:, None],
        "sum over the two": lambda x, A, b: torch.zeros_like(x),
        "torch.Tensor": lambda x, A, b: _gaussian_reference(x, A, b).tolist(),
    })


def _residual_jacobian(x):
    J = torch.zeros(x.shape[0], 2, 2, dtype=x.dtype)
    J[:, 0, 0] = 1.0
    J[:, 0, 1] = 0.5 * torch.cos(x[:, 1])
    J[:, 1, 0] = 0.5 * (1 - torch.tanh(x[:, 0]) ** 2)
    J[:, 1, 1] = 1.0
    return J


def test_residual_jacobian_slips():
    assert check(ex.residual_jacobian, _residual_jacobian).passed

    def sech_not_squared(x):
        J = _residual_jacobian(x)
        J[:, 1, 0] = 0.5 / torch.cosh(x[:, 0])
        return J

    assert_slips(ex.residual_jacobian, {
        "transpose": lambda x: _residual_jacobian(x).transpose(1, 2),
        "the x term": lambda x: _residual_jacobian(x) - torch.eye(2, dtype=x.dtype),
        "factor 0.5": lambda x: 2 * _residual_jacobian(x) - torch.eye(2, dtype=x.dtype),
        "(squared)": sech_not_squared,
        "one Jacobian per row": lambda x: _residual_jacobian(x)[0],
        "should be a torch.Tensor": lambda x: _residual_jacobian(x).tolist(),
        "rules out": lambda x: fk.jacobian(ex.residual_map, x),
    })


def _triangular_reference(x):
    return torch.log(torch.cosh(x[:, 0])) + 0.5 * x[:, 0] + torch.log(1 + 3 * x[:, 2] ** 2)


def test_triangular_log_det_slips():
    assert check(ex.triangular_log_det, _triangular_reference).passed
    assert_slips(ex.triangular_log_det, {
        "the term of z1": lambda x: 0.5 * x[:, 0] + torch.log(1 + 3 * x[:, 2] ** 2),
        "the term of z2": lambda x: torch.log(torch.cosh(x[:, 0])) + torch.log(1 + 3 * x[:, 2] ** 2),
        "the term of z3": lambda x: torch.log(torch.cosh(x[:, 0])) + 0.5 * x[:, 0],
        "not log|det J|": lambda x: _triangular_reference(x).exp(),
        "SUM of the log-diagonal": lambda x: torch.stack(
            [torch.log(torch.cosh(x[:, 0])), 0.5 * x[:, 0], torch.log(1 + 3 * x[:, 2] ** 2)], 1),
        "should be a torch.Tensor": lambda x: 0.0,
        "rules out": lambda x: fk.log_abs_det_jacobian(ex.triangular_map, x),
    })


def test_triangular_map_is_lower_triangular():
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    J = fk.jacobian(ex.triangular_map, x)
    assert (J.triu(diagonal=1) == 0).all()


def test_radial_map_is_invertible_exactly_below_the_stated_strength():
    # Lesson 02 states: z = x (1 + a exp(-|x|^2)) is invertible for 0 <= a < e^{3/2} / 2.
    bound = math.exp(1.5) / 2
    assert bound == pytest.approx(2.24, abs=0.005)
    r = torch.linspace(0.0, 4.0, 4001, dtype=torch.float64)
    points = torch.stack([r, torch.zeros_like(r)], dim=1)
    for a, invertible in ((0.5, True), (1.0, True), (bound - 0.01, True), (bound + 0.01, False)):
        det = torch.linalg.det(w.radial_map_jacobian(points, strength=a))
        assert bool((det > 0).all()) == invertible, a
