"""Shared fixtures: float64 exactness checks (helpers live in transform_helpers.py)."""

import pytest
import torch


@pytest.fixture(scope="module")
def float64():
    """Exactness checks run in float64; the default dtype is restored afterwards.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("float64")``.
    """
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
