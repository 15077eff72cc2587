"""Lesson 03 (coupling layers): exercise checkers and explorers."""

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson03 as ex  # noqa: E402
from flowkit.widgets import lesson03 as w  # noqa: E402


# ----------------------------------------------------------------------------------
# Exercise 1: the inverse of the sigmoid-scale coupling
# ----------------------------------------------------------------------------------


def inverse_ok(z, mask, h_net, t_net):
    kept = z * mask
    return kept + (1 - mask) * (z - t_net(kept)) / torch.sigmoid(h_net(kept))


def inverse_multiplies(z, mask, h_net, t_net):
    kept = z * mask
    return kept + (1 - mask) * (z - t_net(kept)) * torch.sigmoid(h_net(kept))


def inverse_exp_habit(z, mask, h_net, t_net):
    kept = z * mask
    return kept + (1 - mask) * (z - t_net(kept)) * torch.exp(-h_net(kept))


def inverse_wrong_order(z, mask, h_net, t_net):
    kept = z * mask
    return kept + (1 - mask) * (z / torch.sigmoid(h_net(kept)) - t_net(kept))


def inverse_unmasked_input(z, mask, h_net, t_net):
    return z * mask + (1 - mask) * (z - t_net(z)) / torch.sigmoid(h_net(z))


def inverse_changes_kept(z, mask, h_net, t_net):
    kept = z * mask
    return (z - t_net(kept)) / torch.sigmoid(h_net(kept))


def test_inverse_checker_passes_reference():
    result = ex.sigmoid_inverse.check(inverse_ok, show=False)
    assert result.passed, str(result)
    assert str(result).startswith("PASS")


@pytest.mark.parametrize("wrong, message", [
    (inverse_multiplies, "dividing by sigmoid(h)"),
    (inverse_exp_habit, "not exp(h)"),
    (inverse_wrong_order, "subtract t first"),
    (inverse_unmasked_input, "kept part m * z"),
    (inverse_changes_kept, "pass through untouched"),
    (lambda z, m, h, t: z * m, "kept part only"),
    (lambda z, m, h, t: z * m + (1 - m) * z, "does not give back x"),
])
def test_inverse_checker_explains_typical_mistakes(wrong, message):
    result = ex.sigmoid_inverse.check(wrong, show=False)
    assert not result.passed
    text = str(result)
    assert text.startswith("Not yet") and message in text and "got" in text and "expected" in text, text


def test_inverse_checker_reports_unimplemented_and_crashes():
    def template(z, mask, h_net, t_net):
        raise NotImplementedError

    assert "Not attempted yet" in str(ex.sigmoid_inverse.check(template, show=False))
    assert "raised ZeroDivisionError" in str(ex.sigmoid_inverse.check(lambda z, m, h, t: 1 / 0, show=False))
    assert "torch.Tensor" in str(ex.sigmoid_inverse.check(lambda z, m, h, t: z.tolist(), show=False))


def test_sigmoid_coupling_forward_matches_autograd_and_reference_inverse():
    mask = fk.alternating_mask(3)
    h_net = torch.nn.Linear(3, 3).double()
    t_net = torch.nn.Linear(3, 3).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    with torch.no_grad():
        z = ex.sigmoid_coupling_forward(x, mask, h_net, t_net)
        torch.testing.assert_close(inverse_ok(z, mask, h_net, t_net), x)
        log_det = ((1 - mask) * torch.nn.functional.logsigmoid(h_net(x * mask))).sum(dim=1)
    auto = fk.log_abs_det_jacobian(lambda v: ex.sigmoid_coupling_forward(v, mask, h_net, t_net), x)
    torch.testing.assert_close(log_det, auto)


# ----------------------------------------------------------------------------------
# Exercise 2: the log-det
# ----------------------------------------------------------------------------------


def log_det_ok(x, mask, h_net):
    return ((1 - mask) * torch.log(torch.sigmoid(h_net(x * mask)))).sum(dim=1)


def test_log_det_checker_passes_reference():
    assert ex.sigmoid_log_det.check(log_det_ok, show=False).passed


def _log_sig(t):
    return torch.nn.functional.logsigmoid(t)


@pytest.mark.parametrize("wrong, message", [
    (lambda x, m, h: _log_sig(h(x * m)).sum(dim=1), "multiply by (1 - m)"),
    (lambda x, m, h: ((1 - m) * torch.sigmoid(h(x * m))).sum(dim=1), "sum of their logarithms"),
    (lambda x, m, h: ((1 - m) * h(x * m)).sum(dim=1), "you summed h itself"),
    (lambda x, m, h: ((1 - m) * _log_sig(h(x * m))).mean(dim=1), "not a mean"),
    (lambda x, m, h: -((1 - m) * _log_sig(h(x * m))).sum(dim=1), "wrong sign"),
    (lambda x, m, h: ((1 - m) * _log_sig(h(x))).sum(dim=1), "only the kept part"),
    (lambda x, m, h: (m * _log_sig(h(x * m))).sum(dim=1), "use (1 - m), not m"),
    (lambda x, m, h: (1 - m) * _log_sig(h(x * m)), "sum over the coordinates"),
    (lambda x, m, h: x, "one number per sample"),
    (lambda x, m, h: x[:, 0] * 0, "log_det is off"),
])
def test_log_det_checker_explains_typical_mistakes(wrong, message):
    result = ex.sigmoid_log_det.check(wrong, show=False)
    assert not result.passed
    assert message in str(result), str(result)


# ----------------------------------------------------------------------------------
# Exercise 3: the checkerboard
# ----------------------------------------------------------------------------------


def board_ok(height, width, parity=0):
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    return ((rows + cols + parity) % 2 == 0).float()


def test_checkerboard_checker_passes_reference():
    assert ex.checkerboard.check(board_ok, show=False).passed


@pytest.mark.parametrize("wrong, message", [
    (lambda h, w, p=0: 1.0 - board_ok(h, w, p), "parity is flipped"),
    (lambda h, w, p=0: ((torch.arange(h).view(-1, 1) + p) % 2 == 0).float().expand(h, w), "horizontal stripes"),
    (lambda h, w, p=0: ((torch.arange(w).view(1, -1) + p) % 2 == 0).float().expand(h, w), "vertical stripes"),
    (lambda h, w, p=0: board_ok(h, w, p).bool(), "dtype torch.bool"),
    (lambda h, w, p=0: board_ok(h, w, p)[None], "drop any extra dimensions"),
    (lambda h, w, p=0: board_ok(h, w, 0), "opposite board"),
])
def test_checkerboard_checker_explains_typical_mistakes(wrong, message):
    result = ex.checkerboard.check(wrong, show=False)
    assert not result.passed
    assert message in str(result), str(result)


# ----------------------------------------------------------------------------------
# Exercise 4: a custom Transform
# ----------------------------------------------------------------------------------


class GoodCoupling(fk.Transform):
    def forward(self, x):
        x1, x2 = x[:, 0], x[:, 1]
        s = torch.tanh(x2)
        return torch.stack([x1 * torch.exp(s) + x2 ** 2, x2], dim=1), s

    def inverse(self, z):
        z1, z2 = z[:, 0], z[:, 1]
        s = torch.tanh(z2)
        return torch.stack([(z1 - z2 ** 2) * torch.exp(-s), z2], dim=1), -s


class BadInverse(GoodCoupling):
    def inverse(self, z):
        z1, z2 = z[:, 0], z[:, 1]
        s = torch.tanh(z2)
        return torch.stack([z1 * torch.exp(-s) - z2 ** 2, z2], dim=1), -s


class BadInverseLogDet(GoodCoupling):
    def inverse(self, z):
        x, log_det = super().inverse(z)
        return x, -log_det


class BadForwardLogDet(GoodCoupling):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, torch.exp(log_det)


class MovesKept(GoodCoupling):
    def forward(self, x):
        z, log_det = super().forward(x)
        return z + 1.0, log_det


def test_custom_coupling_checker_passes_reference_class_and_instance():
    assert ex.custom_coupling.check(GoodCoupling, show=False).passed
    assert ex.custom_coupling.check(GoodCoupling(), show=False).passed


@pytest.mark.parametrize("wrong, message", [
    (BadInverse, "does not give back x"),
    (BadInverseLogDet, "-tanh(z2)"),
    (BadForwardLogDet, "log|det| = tanh(x2)"),
    (MovesKept, "z2 = x2 exactly"),
    (int, "must subclass fk.Transform"),
    (fk.Tanh, "forward's z is off"),
])
def test_custom_coupling_checker_explains_typical_mistakes(wrong, message):
    result = ex.custom_coupling.check(wrong, show=False)
    assert not result.passed
    assert message in str(result), str(result)


def test_custom_coupling_checker_reports_a_wrong_log_det_shape():
    class Unsummed(GoodCoupling):
        def forward(self, x):
            z, log_det = super().forward(x)
            return z, log_det[:, None].expand(-1, 2)

    assert "expected (32,)" in str(ex.custom_coupling.check(Unsummed, show=False))


def test_checkerboard_may_not_call_the_library_mask():
    result = ex.checkerboard.check(lambda h, w, p=0: fk.checkerboard_mask(h, w, p)[0], show=False)
    assert not result.passed and "checkerboard_mask" in str(result) and "rules out" in str(result)


class TemplateCoupling(fk.Transform):
    def forward(self, x):
        raise NotImplementedError

    def inverse(self, z):
        raise NotImplementedError


def _template(*args):
    raise NotImplementedError


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_every_reference_passes_and_the_template_is_not_attempted(exercise):
    result = exercise.check(exercise.reference, show=False)
    assert result.passed and str(result).startswith("PASS"), str(result)
    template = TemplateCoupling if exercise is ex.custom_coupling else _template
    untouched = exercise.check(template, show=False)
    assert untouched.status == "not attempted", str(untouched)
    assert str(untouched).startswith("Not attempted yet")
    assert exercise.solution_code().lstrip().startswith(("def ", "class ")) and exercise.hints


def test_custom_coupling_with_only_forward_written_is_still_not_attempted():
    class HalfDone(GoodCoupling):
        def inverse(self, z):
            raise NotImplementedError

    result = ex.custom_coupling.check(HalfDone, show=False)
    assert result.status == "not attempted" and "HalfDone" in str(result)


def test_summary_lists_every_exercise(capsys):
    rows = ex.summary()
    assert [name for name, _ in rows] == [e.name for e in ex.EXERCISES]
    assert "exercises passed" in capsys.readouterr().out


# ----------------------------------------------------------------------------------
# The toy conditioner
# ----------------------------------------------------------------------------------


def test_toy_conditioner_gives_the_formula_and_starts_at_identity():
    cond = w.ToyConditioner(a=0.5, b=2.0, c=0.3, d=-0.1)
    coupling = fk.AffineCoupling(fk.alternating_mask(2), cond, scale_limit=3.0)
    x = torch.randn(50, 2)
    z, log_det = coupling(x)
    s = 3.0 * torch.tanh(0.5 * torch.sin(2.0 * x[:, 0]) / 3.0)
    torch.testing.assert_close(z[:, 0], x[:, 0])
    torch.testing.assert_close(z[:, 1], x[:, 1] * torch.exp(s) + 0.3 * x[:, 0] ** 2 - 0.1)
    torch.testing.assert_close(log_det, s)
    assert fk.check_transform(coupling, x).passed
    identity = fk.AffineCoupling(fk.alternating_mask(2, 1), w.ToyConditioner())
    assert torch.equal(identity(x)[0], x)
    with pytest.raises(ValueError, match="2-D couplings"):
        cond(torch.randn(3, 4))


# ----------------------------------------------------------------------------------
# Explorers
# ----------------------------------------------------------------------------------


def _snapshot(explorer):
    a = explorer.artists
    return {
        "density": np.array(a["density"].get_array()).copy(),
        "vertical": [s.copy() for s in a["vertical"].get_segments()],
        "horizontal": [s.copy() for s in a["horizontal"].get_segments()],
        "marginal_1": np.array(a["marginal_1"].get_ydata()).copy(),
        "marginal_2": np.array(a["marginal_2"].get_ydata()).copy(),
        "status": a["status"].get_text(),
    }


def _changed(before, after, key):
    if key in ("vertical", "horizontal"):
        return any(not np.allclose(b, c) for b, c in zip(before[key], after[key])) or len(before[key]) != len(after[key])
    if key == "status":
        return before[key] != after[key]
    return not np.allclose(before[key], after[key])


def _mass(explorer):
    text = explorer.artists["status"].get_text()
    return float(text.split("mass inside the window: ")[1][:5])


def test_coupling_explorer_every_control_changes_the_picture():
    e = w.coupling_explorer()
    assert set(e.controls) == {"a", "b", "c", "d", "layers"}
    assert "png" in "".join(e._repr_mimebundle_())
    for name, value in [("a", -1.2), ("b", 2.5), ("c", -0.5), ("d", 1.0), ("layers", 3)]:
        before = _snapshot(e)
        e.controls[name].value = value
        after = _snapshot(e)
        assert _changed(before, after, "density"), name
        assert _changed(before, after, "vertical") or _changed(before, after, "horizontal"), name
        assert _changed(before, after, "marginal_2"), name
        assert np.isfinite(after["density"]).all()


def test_coupling_explorer_one_layer_leaves_x1_alone_and_mass_is_one():
    e = w.coupling_explorer()
    e.set(a=0.3, b=1.0, c=0.05, d=0.2, layers=1)  # mild, so the window holds ~all the mass
    s = _snapshot(e)
    scene = w._CouplingScene()
    # x1 = z1 with one coupling: its marginal is exactly N(0, 1) (up to the grid sum).
    np.testing.assert_allclose(s["marginal_1"], scene.normal_1d, atol=1e-3)
    for vertical_line in s["vertical"]:
        assert np.ptp(vertical_line[:, 0]) == 0.0  # vertical lines stay vertical
    assert "one coupling cannot touch" in s["status"]
    assert _mass(e) == pytest.approx(1.0, abs=0.01)
    e.set(layers=2)
    assert "both coordinates are transformed" in e.artists["status"].get_text()
    assert np.abs(_snapshot(e)["marginal_1"] - scene.normal_1d).max() > 0.03
    # The identity (s = t = 0) shows the base density: mass 1.000 in the window.
    e.set(a=0.0, c=0.0, d=0.0)
    assert _mass(e) == pytest.approx(1.0, abs=2e-3)


def test_coupling_explorer_extreme_settings_show_a_message_not_an_error():
    e = w.coupling_explorer()
    e.set(a=3.0, b=3.0, c=1.0, d=2.0, layers=6)
    text = e.artists["status"].get_text()
    assert "pushed outside the window" in text and "soft-clamped" in text
    assert np.isfinite(np.asarray(e.artists["density"].get_array())).all()
    e.set(a=-3.0, c=-1.0, d=-2.0)
    assert np.isfinite(np.asarray(e.artists["density"].get_array())).all()


def test_coupling_explorer_reports_a_failing_map_in_the_figure():
    e = w.coupling_explorer()

    def broken(x):
        raise ValueError("overflow for the test")

    e.flows[2].log_prob = broken
    e.controls["layers"].value = 2
    assert "Cannot draw these settings" in e.artists["status"].get_text()
    e.controls["layers"].value = 1
    assert "Cannot draw" not in e.artists["status"].get_text()


def test_jacobian_explorer_every_control_changes_the_matrix_and_log_dets_agree():
    e = w.jacobian_explorer()
    assert set(e.controls) == {"dim", "mask", "order", "point"}
    image, title = e.artists["image"], e.artists["title"]
    for name, value in [("point", 3), ("mask", "alternating"), ("order", "kept first"), ("dim", 6)]:
        before = np.array(image.get_array()).copy()
        e.controls[name].value = value
        after = np.array(image.get_array())
        assert before.shape != after.shape or not np.allclose(before, after), name
        slogdet, summed = [float(part.split(" ")[-1].rstrip(",")) for part in
                           title.get_text().split("\n")[1].split(": ")[1].split(", ")]
        assert slogdet == pytest.approx(summed, abs=1e-4)
    # Kept first: the upper-right block (kept outputs, transformed inputs) is exactly zero,
    # the kept block is the identity, the transformed block is diagonal.
    jac = np.asarray(image.get_array())
    k = 3
    assert np.all(jac[:k, k:] == 0)
    np.testing.assert_allclose(jac[:k, :k], np.eye(k))
    lower = jac[k:, k:]
    assert np.all(lower[~np.eye(6 - k, dtype=bool)] == 0) and np.all(np.diag(lower) > 0)


def test_lesson_figure_builds():
    fig = w.lesson_figure()
    assert len(fig.axes) >= 4
    assert w.channel_strip(fk.channel_mask(4, 2, 2)).shape == (2, 11)
