"""The ONNX export cache: one export per (weights, config, settings), reused after; a broken cached file, or one whose
bytes differ from the hash recorded at export, is exported again; nothing half-written is ever left under the
cache's name."""
from pathlib import Path

import numpy as np
import pytest
import torch

from classifiers.onnx_cache import CACHE_ENV, cached_onnx, cache_root
from fashion2stage.nets import OnnxNet

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's own notice


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).relu()


def export_tiny(model: torch.nn.Module, path: Path) -> Path:
    """The TorchScript exporter: the cache does not care which exporter wrote a file, and this one takes a second."""
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), input_names=["images"], dynamo=False,
                      dynamic_axes={"images": {0: "batch"}})
    return path


def _run(net: OnnxNet, x: torch.Tensor) -> np.ndarray:
    """The exported network's one output for ``x``, as predict calls it."""
    return next(iter(net(x.numpy()).values()))


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A cache folder of its own, a weights file and a config file for the key."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = Tiny().eval()
    weights, config = tmp_path / "weights.bin", tmp_path / "config.json"
    weights.write_bytes(b"weights v1")
    config.write_text('{"kind": "attributes"}')
    return model, [weights, config]


def test_exports_once_then_reuses(run):
    model, files = run
    exports, notes = [], []

    def export(path: Path) -> Path:
        exports.append(path)
        return export_tiny(model, path)

    first = cached_onnx("attributes", files, {}, export, lambda p: p, notify=notes.append)
    again = cached_onnx("attributes", files, {}, export, lambda p: p, notify=notes.append)
    assert first == again and first.parent == cache_root() / "onnx" and len(exports) == 1
    assert len(notes) == 1 and str(first) in notes[0]
    # no temporary file left: the export and its recorded hash
    assert sorted(p.name for p in first.parent.iterdir() if p.name != ".lock") == [first.name, first.name + ".sha256"]

    x = torch.rand(3, 3, 8, 8)
    np.testing.assert_allclose(_run(OnnxNet(first), x), model(x).detach().numpy(), atol=1e-5)

    # other weights or other baked-in settings: another file, never the old one
    files[0].write_bytes(b"weights v2")
    other = cached_onnx("attributes", files, {}, export, lambda p: p)
    tuned = cached_onnx("attributes", files, {"image_size": 320}, export, lambda p: p)
    assert len({first, other, tuned}) == 3 and len(exports) == 3


def test_a_cached_file_that_fails_to_load_is_exported_again_once(run):
    model, files = run
    exports = []

    def export(path: Path) -> Path:
        exports.append(path)
        return export_tiny(model, path)

    def load(p: Path) -> OnnxNet:
        return OnnxNet(p)

    cached_onnx("keypoints", files, {}, export, load)
    cached = next((cache_root() / "onnx").glob("keypoints-*.onnx"))
    cached.write_bytes(b"not an onnx file")  # e.g. written by an incompatible onnx version
    module = cached_onnx("keypoints", files, {}, export, load)
    assert len(exports) == 2 and isinstance(module, OnnxNet)

    def broken_export(p: Path) -> None:
        p.write_bytes(b"still not onnx")

    with pytest.raises(Exception, match="(?i)protobuf|invalid|load|parse"):  # an error, not a loop
        cached_onnx("keypoints", [files[1]], {}, broken_export, load)


def test_a_failed_export_leaves_no_file_under_the_cache_name(run):
    _, files = run

    def failing(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        cached_onnx("detector", files, {}, failing, lambda p: p)
    assert not [p for p in (cache_root() / "onnx").iterdir() if p.suffix in (".onnx", ".tmp")]


class Wide(torch.nn.Module):
    """A convolution with 13.8 KB of weights: room to flip 2,000 bytes of them and still have a loadable file."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 128, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_flipped_bytes_in_a_cached_export_are_found_and_it_is_exported_again(run):
    _, files = run
    model = Wide().eval()
    exports, notes = [], []

    def export(path: Path) -> Path:
        exports.append(path)
        return export_tiny(model, path)

    def load(p: Path) -> OnnxNet:
        return OnnxNet(p)

    x = torch.rand(1, 3, 8, 8)
    expected = model(x).detach().numpy()
    cached_onnx("keypoints", files, {}, export, load)
    cached = next((cache_root() / "onnx").glob("keypoints-*.onnx"))
    data = bytearray(cached.read_bytes())
    start = bytes(data).index(model.conv.weight.detach().numpy().tobytes()[:64])  # the weights, stored raw
    data[start:start + 2000] = bytes(b ^ 0xFF for b in data[start:start + 2000])
    cached.write_bytes(bytes(data))
    damaged = _run(load(cached), x)  # it loads without a word, and answers wrongly: what the hash is for
    assert not np.allclose(damaged, expected, atol=1e-3)

    notes.clear()
    module = cached_onnx("keypoints", files, {}, export, load, notify=notes.append)
    assert len(exports) == 2 and len(notes) == 1 and str(cached) in notes[0] and "hash" in notes[0], notes
    np.testing.assert_allclose(_run(module, x), expected, atol=1e-5)
    cached_onnx("keypoints", files, {}, export, load, notify=notes.append)
    assert len(exports) == 2 and len(notes) == 1  # the new export checks, and is used as it is

    cached.with_name(cached.name + ".sha256").unlink()  # an export from before hashes were recorded
    cached_onnx("keypoints", files, {}, export, load, notify=notes.append)
    assert len(exports) == 3 and "no recorded hash" in notes[-1]
