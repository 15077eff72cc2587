"""Bad input gets a clear error naming what was expected; never a silent NaN."""

import numpy as np
import pytest
import torch

import flowkit as fk


@pytest.fixture
def flow():
    return fk.RealNVP(2, num_couplings=2, hidden=8)


def test_numpy_input_is_refused_with_the_conversion(flow):
    with pytest.raises(TypeError, match=r"NumPy array.*torch.as_tensor"):
        flow.log_prob(np.zeros((3, 2)))


def test_integer_input_is_refused(flow):
    with pytest.raises(TypeError, match="floating-point"):
        flow.log_prob(torch.zeros(3, 2, dtype=torch.int64))


def test_missing_batch_dimension(flow):
    with pytest.raises(ValueError, match=r"missing its batch dimension.*unsqueeze\(0\)"):
        flow.log_prob(torch.zeros(2))


def test_wrong_event_shape(flow):
    with pytest.raises(ValueError, match=r"expected \(batch, 2\)"):
        flow.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="scalar"):
        flow.log_prob(torch.tensor(1.0))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_inputs(flow, bad):
    x = torch.zeros(4, 2)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        flow.log_prob(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        fk.Tanh()(x)


def test_sample_counts_and_temperature(flow):
    with pytest.raises(ValueError, match="non-negative"):
        flow.sample(-1)
    with pytest.raises(TypeError, match="must be an int"):
        flow.sample(2.5)
    with pytest.raises(ValueError, match="temperature"):
        flow.sample(3, temperature=0.0)


def test_masks_of_the_wrong_size_or_values():
    coupling = fk.AffineCoupling(fk.alternating_mask(3), hidden=4)
    with pytest.raises(ValueError, match=r"expected \(batch, 3\)"):
        coupling(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="only 0"):
        fk.AffineCoupling(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="conditioner returned"):
        fk.AffineCoupling(fk.alternating_mask(4), conditioner=torch.nn.Linear(4, 4))(torch.zeros(2, 4))


def test_non_invertible_parameters():
    with pytest.raises(ValueError, match="non-zero"):
        fk.Affine(0.0)
    with pytest.raises(ValueError, match="singular"):
        fk.Linear([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ValueError, match="singular"):
        fk.Linear([[0.15, 0.3], [0.1, 0.2]])  # det is round-off in float32, not zero
    t = fk.Linear([[1.0, 0.0], [0.0, 1.0]])
    with torch.no_grad():
        t.matrix[1, 1] = 0.0  # a learner edits a parameter after construction
    with pytest.raises(ValueError, match="singular"):
        t(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="tailweight must be positive"):
        fk.SinhArcsinh(tailweight=-1.0)
    with pytest.raises(ValueError, match="permutation must contain"):
        fk.Permutation([0, 0, 1])


def test_domain_errors_instead_of_nan():
    with pytest.raises(ValueError, match=r"Log.forward expects values strictly inside \(0, inf\)"):
        fk.Log()(torch.tensor([[-1.0]]))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        fk.Logit()(torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match=r"\(-1, 1\)"):
        fk.Tanh().inverse(torch.tensor([[1.5]]))


def test_user_transform_with_a_wrong_log_det_shape():
    class Forgetful(fk.Transform):
        def forward(self, x):
            return x, torch.zeros_like(x)  # not summed over the event

        def inverse(self, z):
            return z, torch.zeros(z.shape[0])

    with pytest.raises(ValueError, match=r"expected \(3,\).*sum_event"):
        Forgetful()(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="must return a pair"):
        class Single(fk.Transform):
            def forward(self, x):
                return x
        Single()(torch.zeros(1, 1))


def test_flow_and_fit_argument_types(flow):
    with pytest.raises(TypeError, match="item 1"):
        fk.Flow([fk.Tanh(), torch.nn.Linear(2, 2)], fk.StandardNormal(2))
    with pytest.raises(ValueError, match="dim >= 2"):
        fk.RealNVP(1)
    with pytest.raises(ValueError, match="non-negative"):
        fk.fit(flow, torch.zeros(10, 2), steps=-5)
    with pytest.raises(ValueError, match=r"expected \(batch, 2\)"):
        fk.fit(flow, torch.zeros(10, 3), steps=1, progress=False)
    with pytest.raises(ValueError, match="split must be one of"):
        fk.data.digits("validation")
    with pytest.raises(ValueError, match="no CUDA"):
        if not torch.cuda.is_available():
            fk.fit(flow, torch.zeros(10, 2), steps=1, device="cuda")
        else:
            raise ValueError("no CUDA check needed on this machine")


def test_diverging_training_stops_with_a_clear_error():
    flow = fk.Flow([fk.Affine(1.0, 0.0, learnable=True)], fk.StandardNormal(1))
    data = torch.full((64, 1), 1e30)
    with pytest.raises((FloatingPointError, ValueError), match="NaN|infinite|loss became"):
        fk.fit(flow, data, steps=5, lr=1e10, clip_grad=None, progress=False)
