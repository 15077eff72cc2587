"""Lesson 01: its explorers react to every control, and its checkers catch the usual slips."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson01 as ex  # noqa: E402
from flowkit.widgets import lesson01 as w  # noqa: E402

LOG_2PI = math.log(2 * math.pi)


def log_normal(x):
    return -0.5 * x ** 2 - 0.5 * LOG_2PI


def snapshot(*artists):
    """Copies of everything an update could change on these artists."""
    out = []
    for a in artists:
        if hasattr(a, "get_xydata"):
            out.append(np.array(a.get_xydata(), dtype=float).copy())
        elif hasattr(a, "get_data") and callable(a.get_data):
            data = a.get_data()
            if hasattr(data, "values"):  # StepPatch
                out.append(np.concatenate([np.asarray(data.values, float),
                                           np.asarray(data.edges, float)]))
            else:
                out.append(np.concatenate([np.ravel(np.asarray(d, float)) for d in data]))
        elif hasattr(a, "get_text"):
            out.append(a.get_text())
        elif hasattr(a, "patches"):  # bar container
            out.append(np.array([p.get_height() for p in a.patches]))
    return out


def changed(before, after):
    for b, a in zip(before, after):
        if isinstance(b, str):
            if a != b:
                return True
        elif np.shape(a) != np.shape(b) or not np.allclose(a, b, equal_nan=True):
            return True
    return False


# ----------------------------------------------------------------------------------
# Explorers
# ----------------------------------------------------------------------------------


def test_density_explorer_every_control_redraws_and_mass_stays_one():
    e = w.density_explorer()
    arts = [e.artists[k] for k in ("map", "curve", "hist", "mass")]
    assert e.artists["mass"].get_text().endswith("1.000")
    for name, spec in w.MAPS.items():
        before = snapshot(*arts)
        if e.controls["map"].value != name:
            e.controls["map"].value = name
            assert changed(before, snapshot(*arts)), f"choosing {name} changed nothing"
        assert e.artists["mass"].get_text() == "∫ p_Y(y) dy = 1.000", name
        for key, _, value, lo, hi, _ in spec["params"]:
            for new in (lo + 0.35 * (hi - lo), hi):
                if abs(new) < 1e-9 or abs(new - e.controls[key].value) < 1e-9:
                    continue
                before = snapshot(*arts)
                e.controls[key].value = new
                assert changed(before, snapshot(*arts)), f"moving {key} changed nothing"
                assert e.artists["mass"].get_text() == "∫ p_Y(y) dy = 1.000", (key, new)
                assert "1.000" in e.readout.value
                assert e.artists["message"].get_text() == ""
            e.controls[key].value = value


@pytest.mark.parametrize("name,key_p,p,key_q,q", [
    ("affine", "affine_a", -1.3, "affine_b", 0.4),        # decreasing
    ("exp", "exp_sigma", 1.5, "exp_mu", 0.0),             # range clipped at y = 0
    ("exp", "exp_sigma", -0.7, "exp_mu", 0.5),            # decreasing, clipped
    ("tanh", "tanh_gain", 2.5, "tanh_shift", -1.0),       # clipped at y = 1
    ("sinh-arcsinh", "sas_skew", -1.0, "sas_tailweight", 0.5),
])
def test_density_explorer_histogram_is_that_of_the_pushed_samples(name, key_p, p, key_q, q):
    e = w.density_explorer(num_samples=5000, seed=3)
    e.set(map=name, **{key_p: p, key_q: q})
    data = e.artists["hist"].get_data()
    heights, edges = data.values, data.edges
    flow = w.map_flow(name, p, q)
    with torch.no_grad():
        pushed = flow.inverse(torch.randn(5000, 1, generator=torch.Generator().manual_seed(3),
                                          dtype=torch.float64))[0][:, 0].numpy()
    counts, _ = np.histogram(pushed, edges)
    np.testing.assert_allclose(heights, counts / (5000 * np.diff(edges)), atol=1e-12)


def test_density_explorer_shows_only_the_chosen_maps_sliders():
    e = w.density_explorer()
    e.controls["map"].value = "tanh"
    visible = [k for k, s in e.controls.items() if k != "map"
               and s in [c for box in e.widget.children[1:-2] if box.layout.display != "none"
                         for c in box.children]]
    assert visible == ["tanh_gain", "tanh_shift"]


@pytest.mark.parametrize("name,key,value", [
    ("affine", "affine_a", 0.0), ("exp", "exp_sigma", 0.0),
    ("tanh", "tanh_gain", 0.0), ("sinh-arcsinh", "sas_tailweight", 0.0),
    ("affine", "affine_a", 1e-17),  # a slider stepping through zero may land here
])
def test_density_explorer_zero_scale_shows_a_message(name, key, value):
    e = w.density_explorer()
    e.controls["map"].value = name
    e.controls[key].value = value  # must not raise
    assert "no inverse" in e.artists["message"].get_text().replace("\n", " ")
    assert "not invertible" in e.readout.value
    assert len(e.artists["curve"].get_xdata()) == 0
    # and it recovers
    e.controls[key].value = 1.0
    assert e.artists["message"].get_text() == ""
    assert e.artists["mass"].get_text().endswith("1.000")


def test_map_flow_matches_closed_forms():
    y = np.array([0.3, 1.0, 2.5])
    lognormal = w.map_flow("exp", 0.5, 0.2)
    with torch.no_grad():
        got = lognormal.log_prob(torch.tensor(y)[:, None]).numpy()
    expected = log_normal((np.log(y) - 0.2) / 0.5) - math.log(0.5) - np.log(y)
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert isinstance(lognormal.transforms[0], fk.Log)  # data y = exp(...) -> Log first
    with pytest.raises(ValueError, match="no inverse"):
        w.map_flow("affine", 0.0, 1.0)


def test_rectangles_explorer_masses_agree_for_every_control():
    e = w.rectangles_explorer()
    arts = [e.artists[k] for k in ("strip_x", "strip_y", "curve_y", "text_x", "text_y", "summary")]
    for key, values in (("x", [-2.0, 1.2]), ("dx", [0.1, 0.9]), ("a", [-1.2, 0.3, 1.5])):
        for value in values:
            before = snapshot(*arts)
            e.controls[key].value = value
            assert changed(before, snapshot(*arts)), f"moving {key} changed nothing"
            mx = e.artists["text_x"].get_text().splitlines()[0].split("=")[1].strip()
            my = e.artists["text_y"].get_text().splitlines()[0].split("=")[1].strip()
            assert mx == my, (key, value, mx, my)
    m = w.strip_masses(0.3, 0.5, 0.8)
    assert m["mass_y"] == pytest.approx(m["mass_x"], abs=1e-6)
    assert m["stretch"] == pytest.approx((math.exp(0.8 * 0.8) - math.exp(0.24)) / 0.5)


def test_rectangles_explorer_zero_a_shows_a_message():
    e = w.rectangles_explorer()
    e.controls["a"].value = 0.0
    assert "collapses" in e.artists["message"].get_text().replace("\n", " ")
    assert "not invertible" in e.artists["summary"].get_text()
    e.controls["a"].value = 0.5
    assert e.artists["message"].get_text() == ""


def test_composition_explorer_terms_add_up_to_log_prob():
    e = w.composition_explorer()
    arts = [e.artists[k] for k in ("hist", "curve", "bars", "text", "probe")]
    for key, values in (("K", [0, 5, 8]), ("y", [-1.5, 2.0])):
        for value in values:
            before = snapshot(*arts)
            e.controls[key].value = value
            assert changed(before, snapshot(*arts)), f"moving {key} changed nothing"
            lines = dict(line.split("=") for line in e.artists["text"].get_text().splitlines())
            values_ = {k.strip(): float(v) for k, v in lines.items()}
            assert values_["sum"] == pytest.approx(values_["flow.log_prob"], abs=2e-4)
    for k in range(9):
        flow = w.composition_flow(k)
        base, terms = w.log_prob_terms(flow, 0.7)
        assert len(terms) == k
        with torch.no_grad():
            assert base + sum(terms) == pytest.approx(float(flow.log_prob(torch.tensor([[0.7]]).double())))


def test_lesson_figure_builds():
    fig = w.lesson_figure()
    assert len(fig.axes) == 3


# ----------------------------------------------------------------------------------
# Exercises
# ----------------------------------------------------------------------------------


def not_attempted(*args):
    raise NotImplementedError


def assert_slips(exercise, cases):
    """Each wrong answer fails with a message containing its needle."""
    for needle, fn in cases.items():
        result = exercise.check(fn, show=False)
        assert not result.passed, needle
        assert result.status == "fail", needle
        assert needle in str(result), (needle, str(result))


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_every_reference_passes_and_the_template_is_not_attempted(exercise):
    result = exercise.check(exercise.reference, show=False)
    assert result.passed and str(result).startswith("PASS"), str(result)
    template = exercise.check(not_attempted, show=False)
    assert template.status == "not attempted" and str(template).startswith("Not attempted yet")
    assert "def " in exercise.solution_code()
    assert exercise.hints


def test_a_learner_exception_is_reported_with_their_line():
    def log_prob_affine(y, a, b):
        return y.no_such_method()

    result = ex.affine_density.check(log_prob_affine, show=False)
    assert result.status == "fail"
    assert "AttributeError" in str(result) and "y.no_such_method()" in str(result)


def test_passing_the_result_instead_of_the_function_is_explained():
    result = ex.sinh_log_derivative.check(torch.zeros(3), show=False)
    assert not result.passed and "without calling it" in str(result)


def test_summary_lists_every_exercise(capsys):
    ex.affine_density.check(ex.affine_density.reference, show=False)
    rows = ex.summary()
    assert [name for name, _ in rows] == [e.name for e in ex.EXERCISES]
    assert dict(rows)["affine_density"] == "pass"
    assert "exercises passed" in capsys.readouterr().out


def test_affine_density_slips():
    assert_slips(ex.affine_density, {
        "left out the log-derivative term": lambda y, a, b: log_normal((y - b) / a),
        "sign of the log|a| term is flipped": lambda y, a, b: log_normal((y - b) / a) + math.log(abs(a)),
        "uses |a|": lambda y, a, b: log_normal((y - b) / a) - torch.log(torch.tensor(a)),
        "evaluated p_X at y": lambda y, a, b: log_normal(y) - math.log(abs(a)),
        "dividing": lambda y, a, b: log_normal((y - b) * a) - math.log(abs(a)),
        "off at input": lambda y, a, b: log_normal((y - b) / a) - math.log(abs(a)) + 0.1,
        "shape": lambda y, a, b: (log_normal((y - b) / a) - math.log(abs(a)))[:, None],
        "should be a torch.Tensor": lambda y, a, b: 1.0,
    })


def test_sinh_log_derivative_slips():
    assert ex.sinh_log_derivative.check(lambda x: torch.log(torch.cosh(x)), show=False).passed
    assert_slips(ex.sinh_log_derivative, {
        "derivative cosh(x) itself": torch.cosh,
        "log of the map": lambda x: torch.log(torch.sinh(x).abs()),
        "sign is flipped": lambda x: -torch.log(torch.cosh(x)),
        "off at input": lambda x: x.abs(),
        "should be a torch.Tensor": lambda x: 1.0,
        "raised ValueError": lambda x: (_ for _ in ()).throw(ValueError("boom")),
    })


def test_sinh_affine_density_slips():
    def x_of(y, a, b):
        return (torch.asinh(y) - b) / a

    assert_slips(ex.sinh_affine_density, {
        "affine step's term is missing":
            lambda y, a, b: log_normal(x_of(y, a, b)) - torch.log(torch.cosh(torch.asinh(y))),
        "sinh step's term is missing": lambda y, a, b: log_normal(x_of(y, a, b)) - math.log(abs(a)),
        "both log-derivative terms": lambda y, a, b: log_normal(x_of(y, a, b)),
        "signs are flipped": lambda y, a, b: log_normal(x_of(y, a, b)) + math.log(abs(a))
        + torch.log(torch.cosh(torch.asinh(y))),
        "wrong point": lambda y, a, b: log_normal(x_of(y, a, b)) - math.log(abs(a))
        - torch.log(torch.cosh(x_of(y, a, b))),
        "wrong order": lambda y, a, b: log_normal(torch.asinh((y - b) / a)) - math.log(abs(a))
        - 0.5 * torch.log1p(((y - b) / a) ** 2),
    })


def test_tanh_flow_slips():
    flow64 = lambda: fk.Flow([fk.Inverse(fk.Tanh())], fk.StandardNormal(1)).double()  # noqa: E731
    assert ex.tanh_flow.check(flow64, show=False).passed
    assert_slips(ex.tanh_flow, {
        "Use fk.Tanh().inv": lambda: fk.Flow([fk.Tanh()], fk.StandardNormal(1)),
        "event shape (1,)": lambda: fk.Flow([fk.Tanh().inv], fk.StandardNormal(2)),
        "should return a fk.Flow": lambda: fk.Tanh(),
        "off at input": lambda: fk.Flow([fk.Tanh().inv, fk.Affine(2.0, 0.0)], fk.StandardNormal(1)),
    })


def test_sinh_arcsinh_explorer_draws_the_map_its_title_names():
    e = w.density_explorer()
    e.controls["map"].value = "sinh-arcsinh"
    e.controls["sas_skew"].value = 0.5
    e.controls["sas_tailweight"].value = 1.5
    x, y = e.artists["map"].get_data()
    x = np.asarray(x, float)
    assert e.figure.axes[0].get_title() == "y = sinh(1.50·asinh(x) − 0.50)"
    np.testing.assert_allclose(y, np.sinh(1.5 * np.arcsinh(x) - 0.5), rtol=1e-6, atol=1e-9)
    # b > 1: y grows like x^b, so the tails of y are heavier than the Gaussian's.
    assert abs(y[-1]) > abs(x[-1])
    e.controls["sas_tailweight"].value = 0.0
    assert "y = sinh(−a)" in e.artists["message"].get_text().replace("\n", " ")
    _, level = e.artists["map"].get_data()
    np.testing.assert_allclose(level, math.sinh(-0.5))
