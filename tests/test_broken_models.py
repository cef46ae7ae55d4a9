"""Broken model files give one line naming the file, through the CLI: exit code 1, one line on stderr, no traceback.

Each case copies one stage of the shipped bundle, breaks one file in it, and runs ``predict --detector/--classifier/
--keypoints RUN --no-default`` (only the broken stage is loaded, so each case takes about a second).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from classifiers.onnx_cache import CACHE_ENV
from fashion2stage.app.cli import app
from fashion2stage.app.pipeline import default_bundle
from fashion2stage.errors import DataError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
FLAG = {"detector": "--detector", "attributes": "--classifier", "keypoints": "--keypoints"}
STAGES = tuple(FLAG)


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scramble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:40] = b"\x00" * 32  # the first bytes of the JSON header that follows the 8-byte length
    path.write_bytes(bytes(data))


def _edit(name: str, change):
    def mutate(run: Path) -> None:
        d = json.loads((run / name).read_text())
        change(d)
        (run / name).write_text(json.dumps(d))
    return mutate


def _first_key(d: dict) -> str:
    return next(iter(d))


# (name, mutation of the run folder, the file the message must name, words it must contain)
COMMON = [
    ("truncated weights", lambda r: _cut(r / "weights.safetensors"), "weights.safetensors", "truncated or corrupt"),
    ("corrupt weights header", lambda r: _scramble_header(r / "weights.safetensors"), "weights.safetensors",
     "truncated or corrupt"),
    ("empty weights", lambda r: (r / "weights.safetensors").write_bytes(b""), "weights.safetensors", "safetensors"),
    ("missing config.json", lambda r: (r / "config.json").unlink(), "", "no config.json"),
    ("malformed config.json", lambda r: (r / "config.json").write_text('{"kind": '), "config.json", "invalid JSON"),
    ("config.json not an object", lambda r: (r / "config.json").write_text("[1, 2]"), "config.json", "JSON object"),
    ("missing labels.json", lambda r: (r / "labels.json").unlink(), "labels.json", "cannot read label set"),
    ("malformed labels.json", lambda r: (r / "labels.json").write_text("{oops"), "labels.json", "invalid JSON"),
    ("labels.json not an object", lambda r: (r / "labels.json").write_text("[1]"), "labels.json", "not a label set"),
    ("empty label set", lambda r: (r / "labels.json").write_text("{}"), "labels.json", "not a label set"),
]
SPECIFIC = [
    ("keypoints", "more keypoints in config", _edit("config.json", lambda d: d.update(num_keypoints=9)),
     "labels.json", "names 8 keypoints"),
    ("keypoints", "deconv shapes differ", _edit("config.json", lambda d: d.update(deconv_channels=[64, 64, 64])),
     "weights.safetensors", "of another shape"),
    ("keypoints", "another backbone", _edit("config.json", lambda d: d.update(backbone="resnet18")),
     "weights.safetensors", "missing"),
    ("keypoints", "config lacks crop", _edit("config.json", lambda d: d.pop("crop")), "config.json", "'crop'"),
    ("keypoints", "unknown backbone", _edit("config.json", lambda d: d.update(backbone="no_such_net")),
     "config.json", "no_such_net"),
    ("attributes", "extra value in labels", _edit("labels.json", lambda d: d["attributes"][_first_key(d["attributes"])]
                                                  .append("extra")), "weights.safetensors", "of another shape"),
    ("attributes", "labels lack a key", _edit("labels.json", lambda d: d["attributes"].pop(_first_key(d["attributes"]))),
     "labels.json", "has no attribute"),
    ("attributes", "keys not a list", _edit("config.json", lambda d: d.update(keys="abc")), "config.json",
     "not a list"),
    ("detector", "num_classes differs", _edit("config.json", lambda d: d["model"].update(num_classes=9)),
     "labels.json", "num_classes 9"),
    ("detector", "extra garment type", _edit("labels.json", lambda d: d["garment_types"].append("hat")),
     "labels.json", "names 6 garment types"),
    ("detector", "config lacks model", _edit("config.json", lambda d: d.pop("model")), "config.json", "'model'"),
    ("detector", "weights not a name", _edit("config.json", lambda d: d.update(weights=5)), "config.json",
     "not a file name"),
]
CASES = [(stage, *case) for stage in STAGES for case in COMMON] + SPECIFIC


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    first = sorted(EXAMPLES.glob("*.jpg"))[0]
    (d / first.name).write_bytes(first.read_bytes())
    return d


def _one_line_error(args: list, must_name: Path, words: str) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fashion2stage: "), result.stderr
    assert str(must_name) in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("stage,name,mutate,file,words", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_broken_run_folder_is_one_line_naming_the_file(stage, name, mutate, file, words, photos, tmp_path):
    run = tmp_path / stage
    shutil.copytree(default_bundle() / stage, run)
    mutate(run)
    _one_line_error(["predict", "--images", photos, "--out", tmp_path / "out", FLAG[stage], run, "--no-default"],
                    run / file, words)


@pytest.mark.parametrize("stage", STAGES)
def test_runtime_onnx_without_a_usable_export_is_one_line_naming_the_run(stage, photos, tmp_path, monkeypatch):
    """``--runtime onnx`` (not the default ``auto``, which falls back to torch): the export cache cannot be made."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    run = tmp_path / stage
    shutil.copytree(default_bundle() / stage, run)
    _one_line_error(["predict", "--images", photos, "--out", tmp_path / "out", FLAG[stage], run, "--no-default",
                     "--runtime", "onnx"], run, f"cannot run the {stage} model on ONNX Runtime")


def test_an_onnx_file_that_does_not_load_names_the_file(tmp_path):
    from classifiers.keypoints import load_keypoint_model
    from classifiers.onnx_runtime import use_onnx

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x08\x07 not an ONNX protobuf")
    with pytest.raises(DataError, match="cannot load the ONNX model") as e:
        use_onnx(load_keypoint_model(default_bundle() / "keypoints"), default_bundle() / "keypoints", path=broken)
    assert e.value.path == str(broken)


def test_a_cached_export_of_another_network_is_replaced_not_used(photos, tmp_path, monkeypatch):
    """A valid ONNX file whose outputs are not the run's heads, under the run's cache name (a hand-copied file):
    its load is refused, the network is exported again in its place, and predict runs."""
    import onnx
    from onnx import TensorProto, helper

    from classifiers.attributes import load_attribute_model
    from classifiers.onnx_cache import cache_path

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    run = default_bundle() / "attributes"
    path = cache_path("attributes", [run / "weights.safetensors", run / "config.json"], {})
    path.parent.mkdir(parents=True)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, 224, 224])
    y = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["n", 3, 224, 224])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["heatmaps"])], "other", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = CliRunner().invoke(app, ["predict", "--images", str(photos), "--out", str(tmp_path / "out"),
                                      "--classifier", str(run), "--no-default", "--runtime", "onnx"])
    assert result.exit_code == 0, result.output
    heads = load_attribute_model(run).model.keys  # the labelled attributes and the garment check's type head
    assert "garment_type" in heads
    assert sorted(o.name for o in onnx.load(path).graph.output) == sorted(heads)


def test_broken_yolo_checkpoint(photos, tmp_path):
    run = tmp_path / "yolo"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "detector", "backend": "yolo", "weights": "best.pt",
                                                 "image_size": 64}))
    (run / "labels.json").write_text(json.dumps({"garment_types": ["blouse", "skirt"]}))
    (run / "best.pt").write_bytes(b"PK\x03\x04 truncated zip")
    _one_line_error(["predict", "--images", photos, "--out", tmp_path / "out", "--detector", run, "--no-default"],
                    run / "best.pt", "not a loadable ultralytics checkpoint")


def test_export_of_a_broken_run(tmp_path):
    run = tmp_path / "keypoints"
    shutil.copytree(default_bundle() / "keypoints", run)
    _cut(run / "weights.safetensors")
    _one_line_error(["export", run], run / "weights.safetensors", "truncated or corrupt")
    assert not (run / "model.onnx").exists()


def test_truncated_resume_checkpoint(tmp_path):
    """--resume reads last.pt through runs.load_checkpoint: a cut file is a DataError naming it (the train commands
    print DataErrors as one line)."""
    import torch

    from fashion2stage.errors import DataError
    from fashion2stage.runs import load_checkpoint, save_checkpoint

    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.zeros(64, 64)}})
    assert load_checkpoint(path)["epoch"] == 3
    _cut(path)
    with pytest.raises(DataError, match=r"last\.pt: not a readable training checkpoint"):
        load_checkpoint(path)
