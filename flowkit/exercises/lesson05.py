"""Checkers for lesson 05 (an image RealNVP on 8x8 digits)."""

from __future__ import annotations

import math

import torch

from ._base import LegacyCheckResult as CheckResult

__all__ = ["check_bits_per_dim", "check_squeeze", "check_checkerboard"]


def _reference_bits_per_dim(log_prob_unit: torch.Tensor, num_dims: int, levels: int) -> float:
    # Back to level units: x_level = levels * x_unit, so log p_level = log p_unit - D log(levels).
    log_prob_level = log_prob_unit.double() - num_dims * math.log(levels)
    return float(-log_prob_level.mean() / (num_dims * math.log(2.0)))


def _as_float(value) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def check_bits_per_dim(fn) -> CheckResult:
    """``fn(log_prob_unit, num_dims, levels)`` -> mean bits per dimension (a number).

    ``log_prob_unit`` holds log-densities (nats) of dequantized images rescaled to
    ``[0, 1)``; the answer is the bits/dim of the discrete images, in level units.
    """
    result = CheckResult("bits per dimension from log-densities of [0, 1)-scaled images")
    cases = [
        (torch.tensor([120.0, 80.0, 100.0]), 64, 17),
        (torch.tensor([-500.0, -700.0]), 784, 256),
        (torch.tensor([3.0]), 4, 2),
    ]
    for log_prob, dims, levels in cases:
        expected = _reference_bits_per_dim(log_prob, dims, levels)
        try:
            got = fn(log_prob.clone(), dims, levels)
        except NotImplementedError:
            result.problems.append("bits_per_dim is not implemented yet (replace the raise with your code)")
            return result
        except Exception as err:  # noqa: BLE001 - report the learner's error
            result.problems.append(f"calling bits_per_dim(log_prob, {dims}, {levels}) raised "
                                   f"{type(err).__name__}: {err}")
            return result
        value = _as_float(got)
        if value is None:
            result.problems.append(
                f"bits_per_dim should return one number (the mean over the batch), got "
                f"{type(got).__name__}{tuple(got.shape) if isinstance(got, torch.Tensor) else ''}"
            )
            return result
        if math.isclose(value, expected, rel_tol=1e-6, abs_tol=1e-6):
            continue
        where = f"for log_prob={log_prob.tolist()}, num_dims={dims}, levels={levels}"
        mean_lp = float(log_prob.double().mean())
        hints = {
            "did you forget to convert nats to bits (divide by ln 2)?":
                -(mean_lp - dims * math.log(levels)) / dims,
            "did you forget the change of units? Rescaling by 1/levels adds D log(levels) to the "
            "log-density, so subtract it back: log p_level = log p_unit - D log(levels)":
                -mean_lp / (dims * math.log(2.0)),
            "the unit change has the wrong sign: density in level units is LOWER, "
            "log p_level = log p_unit - D log(levels)":
                -(mean_lp + dims * math.log(levels)) / (dims * math.log(2.0)),
            "bits per *dimension*: divide by num_dims as well":
                -(mean_lp - dims * math.log(levels)) / math.log(2.0),
            "the sign is flipped: bits/dim is the NEGATIVE log-likelihood":
                (mean_lp - dims * math.log(levels)) / (dims * math.log(2.0)),
            "did you use log2(levels) in place of the natural log ln(levels)?":
                -(mean_lp - dims * math.log2(levels)) / (dims * math.log(2.0)),
        }
        hint = next((h for h, v in hints.items() if math.isclose(value, v, rel_tol=1e-6, abs_tol=1e-6)),
                    "recall bits/dim = -log p_level(x) / (D ln 2), with log p_level = log p_unit - D log(levels)")
        result.problems.append(f"{where}: got {value:.6g}, expected {expected:.6g}; {hint}")
        return result
    return result


def _reference_squeeze(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def check_squeeze(squeeze_fn, unsqueeze_fn) -> CheckResult:
    """``squeeze_fn``: ``(B, C, H, W) -> (B, 4C, H/2, W/2)`` with output channel
    ``4c + 2i + j`` at ``(h, w)`` holding channel ``c`` at ``(2h + i, 2w + j)``;
    ``unsqueeze_fn`` undoes it."""
    result = CheckResult("squeeze and its inverse")
    for shape in [(2, 1, 4, 4), (1, 2, 6, 8), (3, 3, 2, 2)]:
        x = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
        expected = _reference_squeeze(x)
        try:
            y = squeeze_fn(x.clone())
        except NotImplementedError:
            result.problems.append("squeeze is not implemented yet (replace the raise with your code)")
            return result
        except Exception as err:  # noqa: BLE001
            result.problems.append(f"squeeze on shape {shape} raised {type(err).__name__}: {err}")
            return result
        if not isinstance(y, torch.Tensor):
            result.problems.append(f"squeeze should return a tensor, got {type(y).__name__}")
            return result
        if tuple(y.shape) != tuple(expected.shape):
            result.problems.append(f"squeeze of shape {shape} gave shape {tuple(y.shape)}, "
                                   f"expected {tuple(expected.shape)} (4x the channels, half the height and width)")
            return result
        if not torch.equal(y, expected):
            if torch.equal(y, x.reshape(expected.shape)):
                hint = ("a plain reshape does not keep 2x2 neighbourhoods together: it cuts the image "
                        "into strips of rows. Reshape to (B, C, H/2, 2, W/2, 2), permute, then reshape")
            elif torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values):
                hint = ("your output holds the right values in another order; the course's convention is "
                        "channel 4c + 2i + j = pixel (2h + i, 2w + j), i.e. permute to (B, C, 2, 2, H/2, W/2)")
            else:
                hint = "a squeeze only moves pixels around; some values were changed, lost or duplicated"
            bad = (y != expected).nonzero()[0].tolist()
            result.problems.append(f"squeeze of shape {shape}: at index {bad} got {y[tuple(bad)].item():g}, "
                                   f"expected {expected[tuple(bad)].item():g}; {hint}")
            return result
        try:
            back = unsqueeze_fn(expected.clone())
        except NotImplementedError:
            result.problems.append("unsqueeze is not implemented yet (replace the raise with your code)")
            return result
        except Exception as err:  # noqa: BLE001
            result.problems.append(f"unsqueeze on shape {tuple(expected.shape)} raised {type(err).__name__}: {err}")
            return result
        if not isinstance(back, torch.Tensor) or tuple(back.shape) != shape:
            got = tuple(back.shape) if isinstance(back, torch.Tensor) else type(back).__name__
            result.problems.append(f"unsqueeze should give back shape {shape}, got {got}")
            return result
        if not torch.equal(back, x):
            bad = (back != x).nonzero()[0].tolist()
            result.problems.append(
                f"unsqueeze(squeeze(x)) is not x for shape {shape}: at index {bad} got "
                f"{back[tuple(bad)].item():g}, expected {x[tuple(bad)].item():g}; undo the steps in reverse "
                "order: reshape to (B, C, 2, 2, H, W), permute to (B, C, H, 2, W, 2), reshape"
            )
            return result
    return result


def check_checkerboard(fn) -> CheckResult:
    """``fn(height, width, parity)`` -> float tensor ``(height, width)`` of 0/1 with
    ``mask[0, 0] == 1`` for parity 0, every neighbour different, parity 1 the complement."""
    result = CheckResult("checkerboard mask")
    for h, w in [(8, 8), (4, 6), (3, 5), (1, 2)]:
        for parity in (0, 1):
            rows = torch.arange(h).view(-1, 1)
            cols = torch.arange(w).view(1, -1)
            expected = ((rows + cols + parity) % 2 == 0).float()
            try:
                got = fn(h, w, parity)
            except NotImplementedError:
                result.problems.append("checkerboard is not implemented yet (replace the raise with your code)")
                return result
            except Exception as err:  # noqa: BLE001
                result.problems.append(f"checkerboard({h}, {w}, {parity}) raised {type(err).__name__}: {err}")
                return result
            call = f"checkerboard({h}, {w}, parity={parity})"
            if not isinstance(got, torch.Tensor):
                result.problems.append(f"{call} should return a torch.Tensor, got {type(got).__name__}")
                return result
            if tuple(got.shape) != (h, w):
                result.problems.append(f"{call} has shape {tuple(got.shape)}, expected ({h}, {w})")
                return result
            if not got.dtype.is_floating_point:
                result.problems.append(f"{call} has dtype {got.dtype}; masks multiply float images, "
                                       "so return a float tensor (.float())")
                return result
            if torch.equal(got, expected):
                continue
            if not ((got == 0) | (got == 1)).all():
                hint = "a mask holds only 0 and 1"
            elif parity == 1 and torch.equal(got, ((rows + cols) % 2 == 0).float()):
                hint = "parity is ignored: parity 1 should give the complementary board (mask[0, 0] = 0)"
            elif torch.equal(got, 1 - expected):
                hint = "you have the complement: parity 0 must keep the top-left pixel (mask[0, 0] = 1)"
            elif torch.equal(got, ((rows + parity) % 2 == 0).float().expand(h, w)):
                hint = "those are horizontal stripes (rows only); a checkerboard alternates along rows AND columns"
            elif torch.equal(got, ((cols + parity) % 2 == 0).float().expand(h, w)):
                hint = "those are vertical stripes (columns only); a checkerboard alternates along rows AND columns"
            else:
                hint = "pixel (r, c) is kept (1) when r + c + parity is even"
            bad = (got != expected).nonzero()[0].tolist()
            result.problems.append(f"{call}: at pixel {tuple(bad)} got {got[tuple(bad)].item():g}, "
                                   f"expected {expected[tuple(bad)].item():g}; {hint}")
            return result
    return result
