"""A flow: a chain of transforms plus a base distribution, optionally given a context."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ._checks import as_event_shape, check_context, check_count, check_positive, check_tensor
from .transforms import CHECK_MODE, Transform, sum_event

__all__ = ["StandardNormal", "Chain", "Flow"]


class StandardNormal(nn.Module):
    r"""The standard Gaussian :math:`\mathcal N(0, I)` over samples of ``event_shape``.

    ``log_prob(z) = -\tfrac12 \lVert z\rVert^2 - \tfrac D2 \log 2\pi`` with ``D`` the number
    of entries in one sample.

    Arguments:
        event_shape: the shape of one sample, an int ``D`` or a tuple such as ``(1, 8, 8)``.

    Example:
        >>> import torch, flowkit as fk
        >>> base = fk.StandardNormal(2)
        >>> base.log_prob(torch.zeros(1, 2))
        tensor([-1.8379])
        >>> base.sample(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """

    def __init__(self, event_shape: int | Sequence[int]):
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        # A buffer so .to(device) / .double() move sampling along with the flow.
        self.register_buffer("_anchor", torch.zeros(()))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one sample: the event shape."""
        return self.event_shape

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of each sample ``z`` of shape ``(batch, *event_shape)``: ``(batch,)``."""
        check_tensor(z, "z", self.event_shape)
        return self._log_prob(z)

    def _log_prob(self, z: Tensor) -> Tensor:  # for callers that checked z already
        return -0.5 * sum_event(z * z) - 0.5 * self.num_dims * math.log(2 * math.pi)

    def sample(self, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of ``N(0, temperature^2 I)``: ``(n, *event_shape)``."""
        n = check_count(n, "n")
        temperature = check_positive(temperature, "temperature")
        z = torch.randn((n, *self.event_shape), generator=generator,
                        dtype=self._anchor.dtype, device=self._anchor.device)
        return z * temperature

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}"


class Chain(Transform):
    r"""Transforms applied one after the other: :math:`f = f_K \circ \dots \circ f_1`.

    ``forward`` runs :math:`f_1` first and sums the log-determinants; ``inverse`` runs the
    inverses from :math:`f_K` back to :math:`f_1`. One loop serves both directions. A
    chain is conditional when any of its transforms is, and hands the context only to
    those.

    Arguments:
        transforms: the flowkit transforms, data side first.

    Example:
        >>> import torch, flowkit as fk
        >>> chain = fk.Chain([fk.Affine(2.0), fk.Affine(1.0, 3.0)])
        >>> z, log_abs_det = chain(torch.tensor([[1.0]]))
        >>> z, log_abs_det
        (tensor([[5.]]), tensor([0.6931]))
    """

    def __init__(self, transforms: Iterable[Transform]):
        super().__init__()
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not isinstance(t, Transform):
                raise TypeError(
                    f"{type(self).__name__} expects flowkit Transforms; item {i} is a {type(t).__name__}"
                )
        self.transforms = nn.ModuleList(transforms)
        self.conditional = any(t.conditional for t in transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._cascade(x, context, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._cascade(z, context, inverse=True)

    def _cascade(self, h: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        """The one loop: every transform in order (or reversed, each inverted), log-dets summed.

        Called from outside any chain, the layers skip their finiteness checks (this
        chain's own call checks its input and output once); if anything fails, the layers
        run again with every check, so the error names the layer at fault.
        """
        outermost = CHECK_MODE.get() == "top"
        token = CHECK_MODE.set("fast") if outermost else None
        try:
            return self._loop(h, context, inverse)
        except (ValueError, TypeError):
            if outermost:
                CHECK_MODE.reset(token)
                token = None
                self._locate_failure("inverse" if inverse else "forward", h, context, embedded=True)
            raise
        finally:
            if token is not None:
                CHECK_MODE.reset(token)

    def _loop(self, h: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        total = h.new_zeros(h.shape[0])
        for t in (reversed(self.transforms) if inverse else self.transforms):
            step = t.inverse if inverse else t.forward
            h, log_abs_det = step(h, context) if t.conditional else step(h)
            total = total + log_abs_det
        return h, total

    def _locate_failure(self, direction: str, inputs: Tensor, context: Tensor | None,
                        embedded: bool = False) -> None:
        """Run the layers again with every check, so the first layer at fault raises its error."""
        if CHECK_MODE.get() == "full":
            return  # already locating, one level up
        token = CHECK_MODE.set("full")
        try:
            with torch.no_grad():
                if not embedded:
                    context = self.embed(context)
                self._loop(inputs, context, direction == "inverse")
        finally:
            CHECK_MODE.reset(token)

    def embed(self, context: Tensor | None) -> Tensor | None:
        """What the conditional transforms receive; a plain chain passes the context as it is."""
        return context

    def _stages(self, h: Tensor, context: Tensor | None, inverse: bool) -> list[Tensor]:
        stages = [h]
        for t in (reversed(self.transforms) if inverse else self.transforms):
            step = t.inverse if inverse else t.forward
            stages.append((step(stages[-1], context) if t.conditional else step(stages[-1]))[0])
        return stages

    def __len__(self) -> int:
        return len(self.transforms)


class Flow(Chain):
    r"""A normalizing flow: transforms :math:`f_1, \dots, f_K` and a base density.

    ``forward`` runs data through :math:`f_1` first (normalizing direction) and returns
    the latent and the summed log-determinant, so

    .. math:: \log p(x \mid c) = \log p_Z(f_K \circ\dots\circ f_1(x; c))
              + \sum_k \log\left|\det \frac{\partial f_k}{\partial h_{k-1}}\right|

    A *conditional* flow models :math:`p(x \mid c)` for a context :math:`c` (a label, a
    noise level, a degraded image). Give ``context_shape`` (the shape of one raw
    context, ``()`` for a scalar) or ``context_classes`` (integer labels). The raw context
    goes once per call through ``embedding`` (if given), and the result reaches every
    transform whose ``conditional`` is True; plain transforms never see it.

    Arguments:
        transforms: flowkit transforms, data side first.
        base: the latent distribution, a module with ``log_prob(z)``, ``sample(n,
            temperature, generator)`` and ``event_shape`` (e.g. :class:`StandardNormal`).
        event_shape: the shape of one data sample; defaults to the base's (pass it when
            transforms change the shape, as a squeeze does).
        context_shape: the shape of one raw context; ``None`` for an unconditional flow.
        embedding: an optional ``nn.Module`` applied to the raw context ``(batch,
            *context_shape)`` once per call (an ``nn.Embedding`` for labels, an MLP).
        context_classes: the number of classes when the context is an integer label of
            shape ``(batch,)``; inferred from an ``nn.Embedding``.

    Example:
        >>> import torch, flowkit as fk
        >>> flow = fk.Flow([fk.Affine(2.0, 1.0)], fk.StandardNormal(1))
        >>> flow.log_prob(torch.tensor([[1.0]]))  # z = 3: log N(3) + log 2
        tensor([-4.7258])
        >>> flow.sample(4).shape
        torch.Size([4, 1])
    """

    def __init__(self, transforms: Iterable[Transform], base: nn.Module,
                 event_shape: int | Sequence[int] | None = None,
                 context_shape: int | Sequence[int] | None = None,
                 embedding: nn.Module | None = None,
                 context_classes: int | None = None):
        super().__init__(transforms)
        if isinstance(base, torch.distributions.Distribution):
            raise TypeError(
                "base must be a flowkit base such as fk.StandardNormal(shape): torch.distributions "
                "objects do not take the temperature and generator that Flow.sample passes, and do "
                "not move with .to(device)"
            )
        if not all(hasattr(base, a) for a in ("log_prob", "sample", "event_shape")):
            raise TypeError("base must be a distribution with log_prob, sample and event_shape, "
                            "e.g. StandardNormal(2)")
        self.base = base
        self.event_shape = as_event_shape(
            event_shape if event_shape is not None else base.event_shape
        )
        if embedding is not None and not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
        if context_classes is None and isinstance(embedding, nn.Embedding):
            context_classes = embedding.num_embeddings
        if context_classes is not None:
            context_classes = check_count(context_classes, "context_classes")
            if context_classes < 1:
                raise ValueError("context_classes must be at least 1")
            if context_shape not in (None, ()):
                raise ValueError("integer class labels have context_shape (); drop context_shape")
            context_shape = ()
        layers_conditional = self.conditional
        self.context_classes = context_classes
        self.context_shape = None if context_shape is None else (
            () if context_shape == () else as_event_shape(context_shape))
        self.conditional = self.context_shape is not None
        if layers_conditional and not self.conditional:
            first = next(i for i, t in enumerate(self.transforms) if t.conditional)
            raise ValueError(
                f"transform {first} ({type(self.transforms[first]).__name__}) is conditional: give "
                "the Flow context_shape= (the shape of one context) or context_classes="
            )
        self.embedding = embedding

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: the base density's event shape."""
        return as_event_shape(self.base.event_shape)

    @property
    def num_dims(self) -> int:
        return math.prod(self.event_shape)

    def _check_context(self, context, batch: int) -> Tensor:
        return check_context(context, batch, self.context_shape, self.context_classes, who="this flow")

    def _context(self, context, batch: int) -> Tensor | None:
        """Checked context, one row per sample, or None for an unconditional flow."""
        if self.conditional:
            return self._check_context(context, batch)
        if context is not None:
            hint = f" (did you mean temperature={context}?)" if isinstance(context, float) else ""
            raise TypeError(f"this flow is not conditional: it takes no context{hint}")
        return None

    def embed(self, context: Tensor | None) -> Tensor | None:
        """What the conditional transforms receive: the embedding of a checked raw context."""
        if context is None or self.embedding is None:
            return context
        out = self.embedding(context)
        if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != context.shape[0]:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"the embedding must return one row per context, got {got} "
                             f"for {context.shape[0]} contexts")
        return out

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data to latent: ``(z, log|det dz/dx|)``, shapes ``(batch, *latent_shape)`` and ``(batch,)``."""
        return self._cascade(x, self.embed(context), inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent to data: ``(x, log|det dx/dz|)``, shapes ``(batch, *event_shape)`` and ``(batch,)``."""
        return self._cascade(z, self.embed(context), inverse=True)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of each sample in ``x`` (given its context): shape ``(batch,)``.

        ``context`` has one row per sample, or one row (or one unbatched context) for all.
        """
        z, log_abs_det = self.forward(x, context)
        if isinstance(self.base, StandardNormal):  # z was checked by forward
            return self.base._log_prob(z) + log_abs_det
        return self.base.log_prob(z) + log_abs_det

    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples: base samples (scaled by ``temperature``) through the inverse.

        For a conditional flow, ``context`` holds one context per sample (batch ``n``), or
        one context (batch 1, or unbatched such as a 0-d label) used for all ``n``.
        """
        n = check_count(n, "n")
        context = self._context(context, n)
        z = self.base.sample(n, temperature=temperature, generator=generator)
        if n == 0:
            return z.new_zeros((0, *self.event_shape))
        x, _ = self.inverse(z, context)
        return x

    def forward_stages(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """``[x, f_1(x), f_2(f_1(x)), ..., z]``: the data after each transform."""
        check_tensor(x, "x", self.event_shape)
        context = self._context(context, x.shape[0])
        return self._stages(x, self.embed(context), inverse=False)

    def inverse_stages(self, z: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """``[z, ..., x]``: a latent sample after each inverse transform, last to first."""
        check_tensor(z, "z", self.latent_shape)
        context = self._context(context, z.shape[0])
        return self._stages(z, self.embed(context), inverse=True)
