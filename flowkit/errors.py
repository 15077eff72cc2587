"""flowkit's error vocabulary: the same fault raises the same exception everywhere.

Every error flowkit raises on bad input is a ``ValueError`` or a ``TypeError`` with a
message that says what was expected, so ``except ValueError`` catches all the value
faults. Two faults have their own names, to be caught on their own:

* :class:`DomainError`: a value outside the set a transform is defined on (``log`` of a
  negative number, ``atanh`` of 1.5, pixels outside ``[0, levels)``);
* :class:`NonFiniteError`: NaN or infinity where finite numbers are needed (in an input,
  in a transform's output, or in a training loss that diverged).

The other conventions: a missing file raises ``FileNotFoundError``; a count that is not an
integer (``n=2.5``) raises ``TypeError`` and a negative one ``ValueError``; NumPy arrays or
integer tensors where float tensors are expected raise ``TypeError``.

Example:
    >>> import torch, flowkit as fk
    >>> try:
    ...     fk.Log()(torch.tensor([[-1.0]]))
    ... except fk.DomainError as err:
    ...     print(type(err).__name__, "is a ValueError:", isinstance(err, ValueError))
    DomainError is a ValueError: True
"""

from __future__ import annotations

__all__ = ["DomainError", "NonFiniteError"]


class DomainError(ValueError):
    """A value outside the domain of a map (for example ``Log`` of a negative number)."""


class NonFiniteError(ValueError, FloatingPointError):
    """NaN or infinite values where finite ones are needed.

    Also a ``FloatingPointError``, so code written for the older divergence error of
    :func:`flowkit.fit` keeps working.
    """
