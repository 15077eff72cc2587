"""Optional MNIST: read offline from a tiny generated stand-in in the same IDX format."""

import gzip
import math

import numpy as np
import pytest
import torch

import flowkit as fk
from flowkit.images import ImageRealNVP, dequantized_bits_per_dim


def write_idx(path, array: np.ndarray, compress: bool):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    body = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(body)
    else:
        path.write_bytes(body)


def stand_in(n, seed):
    """Bright strokes on black, like MNIST: a random thick line per image."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for img in images:
        r0, c0, r1, c1 = rng.integers(4, 24, size=4)
        for t in np.linspace(0, 1, 40):
            r, c = int(r0 + t * (r1 - r0)), int(c0 + t * (c1 - c0))
            img[r - 1:r + 2, c - 1:c + 2] = rng.integers(180, 256)
    return images, rng.integers(0, 10, size=n)


@pytest.fixture
def mnist_dir(tmp_path):
    for split, (img, lab), compress in [("train", stand_in(24, 0), True), ("t10k", stand_in(8, 1), False)]:
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", img, compress)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", lab, compress)
    return tmp_path


def test_reads_idx_files_gzipped_or_not(mnist_dir):
    x, y = fk.data.mnist("train", root=mnist_dir, return_labels=True)
    assert x.shape == (24, 1, 28, 28) and x.dtype == torch.int64 and y.shape == (24,)
    np.testing.assert_array_equal(x[:, 0].numpy(), stand_in(24, 0)[0])
    test = fk.data.mnist("test", root=mnist_dir)
    np.testing.assert_array_equal(test[:, 0].numpy(), stand_in(8, 1)[0])
    assert 0 <= int(x.min()) and int(x.max()) < fk.data.MNIST_LEVELS


def test_torchvision_layout_is_found(mnist_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("tv")
    (root / "MNIST" / "raw").mkdir(parents=True)
    for f in mnist_dir.iterdir():
        (root / "MNIST" / "raw" / f.name).write_bytes(f.read_bytes())
    assert fk.data.mnist("test", root=root).shape == (8, 1, 28, 28)


def test_missing_and_damaged_files_say_what_is_wrong(mnist_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="download=True"):
        fk.data.mnist("train", root=empty)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        fk.data.mnist("val", root=mnist_dir)
    bad = mnist_dir / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x0d\x03" + bytes(12))
    with pytest.raises(ValueError, match="not an IDX file"):
        fk.data.mnist("test", root=mnist_dir)
    bad.write_bytes(bytes([0, 0, 8, 3]) + b"".join(s.to_bytes(4, "big") for s in (8, 28, 28)) + bytes(100))
    with pytest.raises(ValueError, match="header says"):
        fk.data.mnist("test", root=mnist_dir)


def test_download_without_torchvision_explains_the_alternatives(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("no torchvision here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ImportError, match="IDX files"):
        fk.data.mnist("train", root=tmp_path, download=True)


def test_the_same_image_flow_trains_on_28x28(mnist_dir):
    torch.manual_seed(0)
    train = fk.data.mnist("train", root=mnist_dir)
    flow = ImageRealNVP(shape=(1, 28, 28), levels=256, num_scales=3, couplings=1, final_couplings=1,
                        hidden=8, num_blocks=1)
    before = dequantized_bits_per_dim(flow, train, draws=1)
    fk.fit(flow, train, steps=30, batch_size=8, lr=3e-3,
           preprocess=lambda b: fk.data.dequantize(b, 256), progress=False)
    after = dequantized_bits_per_dim(flow, train, draws=1)
    assert math.isfinite(after) and after < before - 0.5
    x = fk.data.dequantize(train[:2], 256)
    flow.eval()
    z, ld = flow.forward(x)
    x_back, ld_back = flow.inverse(z)
    torch.testing.assert_close(x_back, x, atol=2e-3, rtol=1e-4)
    torch.testing.assert_close(ld_back, -ld, atol=5e-3, rtol=1e-4)
