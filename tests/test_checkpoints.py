"""Checkpoints: the shipped model loads and scores; damaged or hostile files are refused."""

import hashlib
import io
import json
import math
import os

import pytest
import torch

import flowkit as fk
from flowkit.images import ImageRealNVP, dequantized_bits_per_dim
from flowkit.pretrained import CHECKPOINT_DIR, MAGIC, PRETRAINED, file_sha256, load_checkpoint, save_checkpoint


def tiny_flow():
    torch.manual_seed(0)
    flow = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1)
    flow(fk.data.dequantize(fk.data.digits("train")[:32]))  # initialise ActNorm
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return flow.eval()


def write_with_header(path, body: bytes):
    header = json.dumps({"payload_bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    path.write_bytes(MAGIC + header.encode() + b"\n" + body)


@pytest.fixture
def saved(tmp_path):
    flow = tiny_flow()
    path = tmp_path / "tiny.pt"
    digest = save_checkpoint(flow, path, {"note": "test"})
    return flow, path, digest


def test_round_trip_gives_the_same_density(saved):
    flow, path, digest = saved
    assert digest == file_sha256(path)
    loaded = load_checkpoint(path, expected_sha256=digest)
    assert not loaded.training and loaded.config == flow.config
    x = fk.data.dequantize(fk.data.digits("val")[:10])
    torch.testing.assert_close(loaded.log_prob(x), flow.log_prob(x))
    assert loaded.metadata == {"note": "test"}


def test_corrupted_bytes_are_refused(saved):
    _, path, _ = saved
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(path)


def test_truncated_file_is_refused(saved):
    _, path, _ = saved
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(raw[: len(MAGIC) + 5])
    with pytest.raises(ValueError, match="header"):
        load_checkpoint(path)


def test_mismatched_hash_is_refused(saved):
    _, path, digest = saved
    with pytest.raises(ValueError, match="does not match its recorded SHA-256"):
        load_checkpoint(path, expected_sha256="0" * 64)


class _Hostile:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    buf = io.BytesIO()
    torch.save({"model": "ImageRealNVP", "config": {}, "state_dict": {"x": _Hostile(str(marker))}}, buf)
    path = tmp_path / "hostile.pt"
    write_with_header(path, buf.getvalue())  # a valid header: only weights_only stands in the way
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_torch_files_and_bad_contents_are_refused(tmp_path, saved):
    flow, _, _ = saved
    plain = tmp_path / "plain.pt"
    torch.save(flow.state_dict(), plain)
    with pytest.raises(ValueError, match="not a flowkit checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")

    def payload_file(name, payload):
        buf = io.BytesIO()
        torch.save(payload, buf)
        path = tmp_path / name
        write_with_header(path, buf.getvalue())
        return path

    state = flow.state_dict()
    with pytest.raises(ValueError, match="unknown model"):
        load_checkpoint(payload_file("a.pt", {"model": "os.system", "config": {}, "state_dict": state}))
    with pytest.raises(ValueError, match="unexpected model config"):
        load_checkpoint(payload_file("b.pt", {"model": "ImageRealNVP", "config": {"evil": 1}, "state_dict": state}))
    with pytest.raises(ValueError, match="not a valid setting"):
        load_checkpoint(payload_file("c.pt", {"model": "ImageRealNVP", "config": {"hidden": 10**9}, "state_dict": state}))
    with pytest.raises(ValueError, match="do not fit"):
        config = dict(flow.config, hidden=16)
        load_checkpoint(payload_file("d.pt", {"model": "ImageRealNVP", "config": config, "state_dict": state}))
    with pytest.raises(ValueError, match="lacks"):
        load_checkpoint(payload_file("e.pt", {"weights": state}))


def test_unknown_pretrained_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="digits-realnvp"):
        fk.load_pretrained("mnist")


def test_shipped_checkpoint_is_small_and_matches_its_recorded_hash():
    entry = PRETRAINED["digits-realnvp"]
    path = CHECKPOINT_DIR / entry["file"]
    assert path.stat().st_size <= 5 * 1024 * 1024
    assert file_sha256(path) == entry["sha256"]


def test_tampered_copy_of_the_shipped_checkpoint_is_refused(tmp_path):
    """Rewriting both payload and header passes the header check, not the recorded hash."""
    entry = PRETRAINED["digits-realnvp"]
    raw = (CHECKPOINT_DIR / entry["file"]).read_bytes()
    end = raw.index(b"\n", len(MAGIC))
    body = bytearray(raw[end + 1:])
    body[-200] ^= 0x01
    path = tmp_path / "tampered.pt"
    write_with_header(path, bytes(body))
    with pytest.raises(ValueError, match="recorded SHA-256"):
        load_checkpoint(path, expected_sha256=entry["sha256"])


def test_pretrained_model_loads_in_eval_mode_and_beats_the_target():
    flow = fk.load_pretrained("digits-realnvp")
    assert isinstance(flow, fk.ImageRealNVP) and not flow.training
    bpd = dequantized_bits_per_dim(flow, fk.data.digits("test"), draws=2, seed=2)
    assert bpd < math.log2(17)
    recorded = flow.metadata["test_bits_per_dim"]
    assert abs(bpd - recorded) < 0.02, (bpd, recorded)
    assert recorded <= 1.80, recorded  # the course's target for the shipped model (8 noise draws)
    assert flow.config.get("spline_bins") and flow.config.get("dequantizer_bins")
    samples = flow.sample(4, temperature=0.8)
    assert samples.shape == (4, 1, 8, 8) and torch.isfinite(samples).all()
