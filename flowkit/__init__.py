"""flowkit: the primitives behind the normalizing-flows course.

Direction convention: ``forward`` is the normalizing direction (data ``x`` -> latent
``z``) and returns ``(z, log|det dz/dx|)``; ``inverse`` is the generative direction and
returns ``(x, log|det dx/dz|)``.
"""

from . import data, metrics
from .flow import Flow, StandardNormal
from .jacobian import TransformCheck, check_transform, jacobian, log_abs_det_jacobian
from .metrics import bits_per_dim
from .models import RealNVP
from . import images
from .images import ImageRealNVP, LogitPreprocess, Split, Squeeze, Unsqueeze, VariationalDequantizer
from .pretrained import load_checkpoint, load_pretrained
from .continuous import ContinuousFlow, VelocityMLP, fit_flow_matching
from .autoregressive import MADE, MAF, MaskedAutoregressive, MaskedLinear, autoregressive_mask
from .train import History, fit, mean_nll
from . import targets
from .vi import fit_vi, importance
from .transforms import (
    ActNorm,
    Affine,
    AffineCoupling,
    AdditiveCoupling,
    ConvNet,
    Exp,
    Inverse,
    Linear,
    Log,
    Logit,
    MLP,
    Permutation,
    Reverse,
    Sigmoid,
    SinhArcsinh,
    SplineCoupling,
    Tanh,
    Transform,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    sum_event,
)

__version__ = "0.1.0"
