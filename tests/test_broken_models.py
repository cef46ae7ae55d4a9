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
     "labels.json", "names 8 keypoints; config.json's num_keypoints is 9"),
    ("keypoints", "deconv shapes differ", _edit("config.json", lambda d: d.update(deconv_channels=[64, 64, 64])),
     "weights.safetensors", "of another shape"),
    ("keypoints", "another backbone", _edit("config.json", lambda d: d.update(backbone="resnet18")),
     "weights.safetensors", "missing"),
    ("keypoints", "config lacks crop", _edit("config.json", lambda d: d.pop("crop")), "config.json",
     "lacks the field 'crop'"),
    ("keypoints", "unknown backbone", _edit("config.json", lambda d: d.update(backbone="no_such_net")),
     "config.json", "no_such_net"),
    ("attributes", "extra value in labels", _edit("labels.json", lambda d: d["attributes"][_first_key(d["attributes"])]
                                                  .append("extra")), "weights.safetensors", "of another shape"),
    ("attributes", "labels lack a key", _edit("labels.json", lambda d: d["attributes"].pop(_first_key(d["attributes"]))),
     "labels.json", "has no attribute"),
    ("attributes", "keys not a list", _edit("config.json", lambda d: d.update(keys="abc")), "config.json",
     "field 'keys' is 'abc'; it must be a list of strings"),
    ("detector", "num_classes differs", _edit("config.json", lambda d: d["model"].update(num_classes=9)),
     "labels.json", "num_classes 9"),
    ("detector", "extra garment type", _edit("labels.json", lambda d: d["garment_types"].append("hat")),
     "labels.json", "names 6 garment types"),
    ("detector", "config lacks model", _edit("config.json", lambda d: d.pop("model")), "config.json",
     "lacks the field 'model'"),
    ("detector", "weights not a name", _edit("config.json", lambda d: d.update(weights=5)), "config.json",
     "field 'weights' is 5; it must be a string"),
]
CASES = [(stage, *case) for stage in STAGES for case in COMMON] + SPECIFIC


def _put(name: str, dotted: str, value):
    """Set the field ``dotted`` (``crop.width``) of the JSON file ``name`` to ``value``."""
    def change(d: dict) -> None:
        *parents, last = dotted.split(".")
        for k in parents:
            d = d[k]
        d[last] = value
    return _edit(name, change)


def _twice(name: str, field: str):
    """Repeat the first name of the list ``field`` of ``name`` at its end."""
    return _edit(name, lambda d: d[field].append(d[field][0]))


# Values of config.json and labels.json that a model cannot be built from, or that would give wrong answers
# without a word (a garment type named twice, a negative crop padding): each is one line naming the file, the
# field and the rule. (stage, case, mutation, file, what the line says)
CORRUPT_FIELDS = [
    ("keypoints", "negative crop width", _put("config.json", "crop.width", -64), "config.json",
     "field 'crop.width' is -64; it must be > 0"),
    ("keypoints", "zero crop height", _put("config.json", "crop.height", 0), "config.json", "'crop.height' is 0"),
    ("keypoints", "crop size a string", _put("config.json", "crop.height", "256"), "config.json",
     "field 'crop.height' is '256'; it must be an integer"),
    ("keypoints", "crop not a multiple of 32", _put("config.json", "crop.width", 200), "config.json",
     "field 'crop.width' is 200; it must be a multiple of 32"),
    ("keypoints", "fill out of range", _put("config.json", "crop.fill", 300), "config.json",
     "field 'crop.fill' is 300; it must be <= 255"),
    ("keypoints", "num_keypoints a string", _put("config.json", "num_keypoints", "8"), "config.json",
     "field 'num_keypoints' is '8'; it must be an integer"),
    ("keypoints", "zero sigma", _put("config.json", "sigma", 0), "config.json", "field 'sigma' is 0; it must be > 0.0"),
    ("keypoints", "two deconvolutions", _put("config.json", "deconv_channels", [128, 128]), "config.json",
     "'deconv_channels'", "it must be 3 long"),
    ("keypoints", "heatmap size disagrees with the crop", _put("config.json", "heatmap_size", [40, 64]), "config.json",
     "field 'heatmap_size' is [40, 64]; the crop 192x192 gives [48, 48]"),
    ("keypoints", "zero std", _put("config.json", "normalisation.std", [0.5, 0, 0.5]), "config.json",
     "'normalisation.std'", "it must be > 0"),
    ("keypoints", "weights outside the run", _put("config.json", "weights", "../weights.safetensors"), "config.json",
     "field 'weights' is '../weights.safetensors'; it must be a file name inside the run folder"),
    ("keypoints", "unknown key", _put("config.json", "sigmaa", 2.0), "config.json", "unknown key 'sigmaa'"),
    ("keypoints", "misspelt crop key", _edit("config.json", lambda d: d["crop"].update(widht=d["crop"].pop("width"))),
     "config.json", "unknown key 'crop.widht'"),
    ("keypoints", "keypoint named twice", _twice("labels.json", "keypoints"), "labels.json",
     "field 'keypoints' names 'left_collar' twice"),
    ("keypoints", "fewer keypoints in labels", _edit("labels.json", lambda d: d["keypoints"].remove("left_waistline")),
     "labels.json", "field 'keypoints_per_type.trousers' names 'left_waistline', which is not among the keypoints"),
    ("keypoints", "unknown key in labels", _put("labels.json", "keypointz", []), "labels.json",
     "unknown key 'keypointz'"),
    ("attributes", "negative crop padding", _put("config.json", "crop.padding", -1.25), "config.json",
     "field 'crop.padding' is -1.25; it must be >= 1.0"),
    ("attributes", "zero crop width", _put("config.json", "crop.width", 0), "config.json", "'crop.width' is 0"),
    ("attributes", "dropout a string", _put("config.json", "dropout", "0.2"), "config.json",
     "field 'dropout' is '0.2'; it must be a number"),
    ("attributes", "key named twice", _twice("config.json", "keys"), "config.json",
     "field 'keys' names 'fine_category' twice"),
    ("attributes", "no keys", _put("config.json", "keys", []), "config.json", "field 'keys' is a list []",
     "it must be non-empty"),
    ("attributes", "type head without none", _edit("config.json", lambda d: d["type_head"]["classes"].remove("none")),
     "config.json", "field 'type_head.classes' lacks 'none'"),
    ("attributes", "type head class not a garment type", _edit("config.json", lambda d: d["type_head"]["classes"]
                                                               .insert(0, "hat")),
     "config.json", "field 'type_head.classes' names 'hat', which is not a garment type of labels.json"),
    ("attributes", "misspelt head key", _edit("config.json", lambda d: d["item_type_head"].update(
        clases=d["item_type_head"].pop("classes"))), "config.json", "unknown key 'item_type_head.clases'"),
    ("attributes", "both crop names", _edit("config.json", lambda d: d.update(crop_spec=d["crop"])), "config.json",
     "both 'crop' and its old name 'crop_spec'"),
    ("attributes", "three-channel mean of two", _put("config.json", "normalisation.mean", [0.5, 0.5]), "config.json",
     "'normalisation.mean'", "it must be 3 long"),
    ("attributes", "value named twice", _edit("labels.json", lambda d: d["attributes"]["sleeve_length"].append(
        "sleeveless")), "labels.json", "field 'attributes.sleeve_length' names 'sleeveless' twice"),
    ("attributes", "attribute of an unknown type", _edit("labels.json", lambda d: d["attribute_types"]["category"]
                                                         .append("hat")),
     "labels.json", "field 'attribute_types.category' names 'hat', which is not among the garment types"),
    ("detector", "garment type named twice", _edit("labels.json", lambda d: d["garment_types"].__setitem__(
        1, "blouse")), "labels.json", "field 'garment_types' names 'blouse' twice"),
    ("detector", "empty min_size", _put("config.json", "model.min_size", []), "config.json",
     "'model.min_size'", "it must be non-empty"),
    ("detector", "negative min_size", _put("config.json", "model.min_size", [-320, 416]), "config.json",
     "'model.min_size'", "it must be > 0"),
    ("detector", "max_size a string", _put("config.json", "model.max_size", "665"), "config.json",
     "field 'model.max_size' is '665'; it must be an integer"),
    ("detector", "misspelt model key", _edit("config.json", lambda d: d["model"].update(
        min_sizes=d["model"].pop("min_size"))), "config.json", "unknown key 'model.min_sizes'"),
    ("detector", "unknown backend", _put("config.json", "backend", "yolov8"), "config.json",
     "field 'backend' is 'yolov8'; it must be one of faster-rcnn, yolo"),
    ("detector", "unknown key", _put("config.json", "wieghts", "weights.safetensors"), "config.json",
     "unknown key 'wieghts'"),
    ("detector", "num_classes not a number", _put("config.json", "model.num_classes", None), "config.json",
     "field 'model.num_classes' is None; it must be an integer"),
]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    first = sorted(EXAMPLES.glob("*.jpg"))[0]
    (d / first.name).write_bytes(first.read_bytes())
    return d


def _one_line_error(args: list, must_name: Path, *words: str) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fashion2stage: "), result.stderr
    assert str(must_name) in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("stage,name,mutate,file,words", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_broken_run_folder_is_one_line_naming_the_file(stage, name, mutate, file, words, photos, tmp_path):
    run = tmp_path / stage
    shutil.copytree(default_bundle() / stage, run)
    mutate(run)
    _one_line_error(["predict", "--images", photos, "--out", tmp_path / "out", FLAG[stage], run, "--no-default"],
                    run / file, words)


@pytest.mark.parametrize("stage,name,mutate,file,words", [(*c[:4], c[4:]) for c in CORRUPT_FIELDS],
                         ids=[f"{c[0]}: {c[1]}" for c in CORRUPT_FIELDS])
def test_a_bad_field_is_one_line_naming_the_file_the_field_and_the_rule(stage, name, mutate, file, words, photos,
                                                                         tmp_path):
    run = tmp_path / stage
    shutil.copytree(default_bundle() / stage, run)
    mutate(run)
    _one_line_error(["predict", "--images", photos, "--out", tmp_path / "out", FLAG[stage], run, "--no-default"],
                    run / file, *words)
    assert not (tmp_path / "out" / "predictions.jsonl").exists()


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
    from fashion2stage.nets import OnnxNet

    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x08\x07 not an ONNX protobuf")
    with pytest.raises(DataError, match="cannot load the ONNX model") as e:
        OnnxNet(broken, outputs=("heatmaps",))
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
