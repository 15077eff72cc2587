"""Pretrained models: safe saving and loading of flowkit checkpoints.

A checkpoint file is three parts, so a damaged or tampered file is caught before any
tensor is read:

1. a magic line ``FLOWKIT-CHECKPOINT 1``;
2. one line of JSON: ``{"payload_bytes": N, "sha256": "<hex>"}``;
3. the payload: ``torch.save({"model": name, "config": {...}, "state_dict": {...},
   "metadata": {...}})``, exactly ``N`` bytes whose SHA-256 is in the header.

Loading checks the header, the length (a truncated file), the payload's hash (a corrupted
file), for a shipped checkpoint the whole file's hash recorded in this module (a
tampered file), and then reads the payload with ``torch.load(weights_only=True)``, which
refuses any pickle that would run code. Finally the model is rebuilt from ``config`` and
the weights must match it exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import torch

from .errors import NonFiniteError
from .flow import Flow

__all__ = ["load_pretrained", "load_checkpoint", "save_checkpoint", "file_sha256",
           "PRETRAINED", "CHECKPOINT_DIR"]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"

MAGIC = b"FLOWKIT-CHECKPOINT 1\n"
_MAX_HEADER = 4096

# Every checkpoint shipped with flowkit, with the SHA-256 of the whole file.
# scripts/train_digits.py rebuilds digits-realnvp.pt and prints its hash.
PRETRAINED: dict[str, dict] = {
    "digits-realnvp": {
        "file": "digits-realnvp.pt",
        "sha256": "bb32299a1feb3f8f69cf02a978627d4ca3f2cb220e5572603ffcd83f2237d542",
        "about": "ImageRealNVP (spline couplings, variational dequantizer) on scikit-learn's 8x8 digits "
                 "(17 grey levels), trained by scripts/train_digits.py",
    },
    "digits-conditional-realnvp": {
        "file": "digits-conditional-realnvp.pt",
        "sha256": "37a63d69ebf03fc017ca01cf4196eb9929585af46d704aa78cb030cc20d50a84",
        "about": "ConditionalImageRealNVP on 8x8 digits given their class label (integer context), "
                 "trained by scripts/train_conditional_digits.py --context labels",
    },
    "digits-same-budget-realnvp": {
        "file": "digits-same-budget-realnvp.pt",
        "sha256": "ce739001e606c4b462f010a7c91b504ba40b0adaf57ea6154981557e85fd6a6e",
        "about": "the unconditional twin of digits-conditional-realnvp (same architecture and budget), "
                 "trained by scripts/train_conditional_digits.py --context none",
    },
    "digits-completion-realnvp": {
        "file": "digits-completion-realnvp.pt",
        "sha256": "4a411612cce4c0c00167f6cd3708324ec2f11295970592da14e9f82f96a15811",
        "about": "ConditionalImageRealNVP on 8x8 digits given a degraded copy (top half or 4x4), "
                 "trained by scripts/train_conditional_digits.py --context completion",
    },
}


def _model_builders() -> dict:
    from .models import ImageRealNVP
    from .conditional import ConditionalImageRealNVP

    return {"ImageRealNVP": ImageRealNVP, "ConditionalImageRealNVP": ConditionalImageRealNVP}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(flow: Flow, path: str | os.PathLike, metadata: dict | None = None) -> str:
    """Write ``flow`` (a model with a ``config``) to ``path``; returns the file's SHA-256."""
    builders = _model_builders()
    name = type(flow).__name__
    if name not in builders or not hasattr(flow, "config"):
        raise TypeError(f"save_checkpoint can save {sorted(builders)}, got {name}")
    state = {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()}
    payload = {"model": name, "config": _jsonable(flow.config), "state_dict": state,
               "metadata": _jsonable(metadata or {})}
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    header = json.dumps({"payload_bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    with open(path, "wb") as fh:
        fh.write(MAGIC + header.encode("ascii") + b"\n" + body)
    return file_sha256(path)


def _jsonable(value):
    """Plain Python values only (round-trips through JSON), so the payload needs no code to load."""
    return json.loads(json.dumps(value))


def _read_payload(raw: bytes, where: str) -> bytes:
    if not raw.startswith(MAGIC):
        raise ValueError(
            f"{where} is not a flowkit checkpoint: it does not start with the "
            f"{MAGIC.strip().decode()!r} header (plain torch.save files are not accepted)"
        )
    end = raw.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if end < 0:
        raise ValueError(f"{where}: the checkpoint header is cut off or malformed")
    try:
        header = json.loads(raw[len(MAGIC):end].decode("ascii"))
        expected_len = int(header["payload_bytes"])
        expected_hash = str(header["sha256"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValueError(f"{where}: the checkpoint header is not valid JSON with payload_bytes and sha256") from None
    body = raw[end + 1:]
    if len(body) != expected_len:
        raise ValueError(
            f"{where} is truncated or padded: the header promises {expected_len} payload bytes, "
            f"found {len(body)}; download or rebuild the file"
        )
    actual = hashlib.sha256(body).hexdigest()
    if actual != expected_hash:
        raise ValueError(
            f"{where} is corrupted: its payload's SHA-256 is {actual}, the header records "
            f"{expected_hash}; download or rebuild the file"
        )
    return body


def _check_config(config, builder_name: str, where: str) -> dict:
    import inspect

    builder = _model_builders()[builder_name]
    allowed = set(inspect.signature(builder).parameters)
    if not isinstance(config, dict) or not set(config) <= allowed:
        extra = sorted(set(config) - allowed) if isinstance(config, dict) else config
        raise ValueError(f"{where}: unexpected model config entries {extra}")
    for key, value in config.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if key == "shape":
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and 0 < v <= 1024 for v in value)
        elif ok:
            ok = 0 <= value <= 4096
        if not ok:
            raise ValueError(f"{where}: model config entry {key}={value!r} is not a valid setting")
    return config


def load_checkpoint(path: str | os.PathLike, expected_sha256: str | None = None) -> Flow:
    """Rebuild a flow from a checkpoint written by :func:`save_checkpoint` (eval mode).

    Raises ``FileNotFoundError`` for a missing file, and ``ValueError`` with the reason
    for a file that is not a checkpoint, is
    truncated, corrupted, fails ``expected_sha256`` (or, for a file shipped with flowkit,
    the hash recorded in the package), contains anything but plain tensors and numbers,
    or whose weights do not fit the model its config describes. Nothing in the file is
    ever executed.
    """
    path = Path(path)
    where = f"checkpoint {path.name!r}"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    raw = path.read_bytes()
    whole = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is None:
        for entry in PRETRAINED.values():
            if path.resolve() == (CHECKPOINT_DIR / entry["file"]).resolve():
                expected_sha256 = entry["sha256"]
    if expected_sha256 is not None and whole != expected_sha256:
        raise ValueError(
            f"{where} does not match its recorded SHA-256: expected {expected_sha256}, "
            f"got {whole}; the file was modified or damaged (reinstall flowkit or rerun "
            "scripts/train_digits.py)"
        )
    body = _read_payload(raw, where)
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError and friends: anything but plain data is refused
        raise ValueError(
            f"{where} was refused by torch.load(weights_only=True): it holds something other "
            f"than tensors and plain values ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    if not isinstance(payload, dict) or not {"model", "config", "state_dict"} <= set(payload):
        raise ValueError(f"{where}: the payload lacks model, config or state_dict")
    name = payload["model"]
    builders = _model_builders()
    if name not in builders:
        raise ValueError(f"{where}: unknown model {name!r}; known models are {sorted(builders)}")
    config = _check_config(payload["config"], name, where)
    flow = builders[name](**config)
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{where}: state_dict must map names to tensors")
    try:
        flow.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{where}: the weights do not fit the model in its config: {str(err)[:300]}") from None
    if not all(torch.isfinite(v).all() for v in state.values() if v.dtype.is_floating_point):
        raise NonFiniteError(f"{where}: the weights contain NaN or infinite values")
    flow.metadata = payload.get("metadata", {})
    flow.eval()
    return flow


def load_pretrained(name: str = "digits-realnvp") -> Flow:
    """A pretrained flow shipped with flowkit, in eval mode, checked against its SHA-256.

    ``"digits-realnvp"``: an :class:`~flowkit.images.ImageRealNVP` on 8x8 digits whose
    ``log_prob`` takes images in level units ``[0, 17)``.

    Example:
        >>> import math, flowkit as fk
        >>> flow = fk.load_pretrained("digits-realnvp")
        >>> x = fk.data.dequantize(fk.data.digits("test")[:50])
        >>> bits_per_dim = -flow.log_prob(x).mean().item() / (64 * math.log(2))
        >>> 1.5 < bits_per_dim < 2.1
        True
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; known ones are {sorted(PRETRAINED)}")
    entry = PRETRAINED[name]
    path = CHECKPOINT_DIR / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"the checkpoint file {path} is missing; rebuild it with scripts/train_digits.py")
    return load_checkpoint(path, expected_sha256=entry["sha256"])
