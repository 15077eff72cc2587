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


@pytest.mark.skipif(torch.cuda.is_available(), reason="the missing-GPU message needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu(flow):
    with pytest.raises(ValueError, match="no CUDA"):
        fk.fit(flow, torch.zeros(10, 2), steps=1, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_cuda_trains_there(flow):
    data = fk.data.two_moons(512, seed=0)
    history = fk.fit(flow, data, steps=5, batch_size=64, device="cuda", progress=False)
    assert len(history.loss) == 5
    assert all(p.device.type == "cuda" for p in flow.parameters())
    assert flow.log_prob(data[:4].cuda()).device.type == "cuda"


def test_diverging_training_stops_with_a_clear_error():
    flow = fk.Flow([fk.Affine(1.0, 0.0, learnable=True)], fk.StandardNormal(1))
    data = torch.full((64, 1), 1e30)
    with pytest.raises(fk.NonFiniteError, match="NaN|infinite|loss became"):
        fk.fit(flow, data, steps=5, lr=1e10, clip_grad=None, progress=False)


class _NaNAfterShift(fk.Transform):
    """A learner's layer that takes log(x - 10): NaN for the inputs below."""

    def forward(self, x):
        return torch.log(x - 10), torch.zeros(x.shape[0])

    def inverse(self, z):
        return torch.exp(z) + 10, torch.zeros(z.shape[0])


class _UnsummedLogDet(fk.Transform):
    def forward(self, x):
        return x, torch.zeros_like(x)

    def inverse(self, z):
        return z, torch.zeros(z.shape[0])


@pytest.mark.parametrize("after", [fk.Tanh, fk.Log, fk.Exp])
def test_inside_a_flow_the_failing_layer_is_still_named(after):
    """Checked once per Flow call, but a learner's layer that fails is named as before,
    even when a later layer would trip over its NaN first."""
    flow = fk.Flow([fk.Affine(2.0), _NaNAfterShift(), after()], fk.StandardNormal(2))
    with pytest.raises(fk.NonFiniteError, match=r"^_NaNAfterShift.forward produced NaN"):
        flow.log_prob(torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"^_UnsummedLogDet.forward returned log_abs_det of shape \(3, 2\)"):
        fk.Flow([fk.Tanh(), _UnsummedLogDet()], fk.StandardNormal(2)).log_prob(torch.ones(3, 2))
    from flowkit.transforms import CHECK_MODE
    assert CHECK_MODE.get() == "top"  # the failure left no mode behind


def test_a_nested_chain_names_the_failing_layer():
    inner = fk.Chain([fk.Affine(1.0), _NaNAfterShift()])
    flow = fk.Flow([fk.Tanh(), inner, fk.Affine(3.0)], fk.StandardNormal(1))
    with pytest.raises(fk.NonFiniteError, match=r"^_NaNAfterShift.forward"):
        flow.log_prob(torch.zeros(2, 1))
    with pytest.raises(fk.NonFiniteError, match=r"^_NaNAfterShift.forward"):
        fk.fit(fk.Flow([fk.Affine(1.0, 0.0, learnable=True), _NaNAfterShift()], fk.StandardNormal(1)),
               torch.zeros(8, 1), steps=1, progress=False)


def test_error_vocabulary():
    assert issubclass(fk.DomainError, ValueError) and issubclass(fk.NonFiniteError, ValueError)
    with pytest.raises(fk.DomainError):
        fk.Log()(torch.tensor([[-1.0]]))
    with pytest.raises(fk.DomainError):
        fk.LogitPreprocess(17)(torch.full((1, 1, 2, 2), 20.0))
    with pytest.raises(fk.NonFiniteError):
        fk.Tanh()(torch.tensor([[float("nan")]]))
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        fk.load_checkpoint("/nonexistent/model.pt")
    for bad_count in (2.5, "3"):
        with pytest.raises(TypeError, match="must be an int"):
            fk.data.two_moons(bad_count)
        with pytest.raises(TypeError, match="must be an int"):
            fk.fit(fk.RealNVP(2, 2, 4), torch.zeros(4, 2), steps=bad_count, progress=False)
