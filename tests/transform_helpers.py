"""Shared test helpers: seeded samples and the properties every transform must have."""

import torch

import flowkit as fk
from flowkit.jacobian import log_abs_det_jacobian


def randn(seed, *shape, scale=1.0):
    """Seeded standard normal samples of ``shape``, times ``scale``."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def randomise(module, seed, std):
    """Replace every parameter by seeded N(0, std^2) values (away from the identity start)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def assert_transform_ok(t, x, atol=1e-6, rtol=1e-6, tolerance=None, context=None):
    """The properties of a flow layer, checked directly and through fk.check_transform.

    inverse(forward(x)) == x; both log-dets equal autograd's; they are negatives of each other.
    """
    args = () if context is None else (context,)
    forward = lambda v: t.forward(v, *args)  # noqa: E731
    inverse = lambda v: t.inverse(v, *args)  # noqa: E731
    z, ld = forward(x)
    x_back, ld_inv = inverse(z)
    torch.testing.assert_close(x_back, x, atol=atol, rtol=rtol)
    torch.testing.assert_close(ld, log_abs_det_jacobian(forward, x), atol=atol, rtol=rtol)
    torch.testing.assert_close(ld_inv, log_abs_det_jacobian(inverse, z), atol=atol, rtol=rtol)
    torch.testing.assert_close(ld_inv, -ld, atol=atol, rtol=rtol)
    tolerance = max(atol, 1e-6) * 10 if tolerance is None else tolerance
    report = fk.check_transform(t, x, tolerance=tolerance, context=context)
    assert report.passed, str(report)
