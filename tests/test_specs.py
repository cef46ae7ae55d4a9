"""The run specs (fashion2stage/specs.py) own config.json: the shipped files in their canonical form, older files
still loading, what a trainer writes checked like what predict reads, and the command line's defaults read from
the settings classes (fashion2stage/train_specs.py)."""
from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import fields

import pytest

from fashion2stage.app import train_commands
from fashion2stage.app.pipeline import default_bundle
from fashion2stage.errors import DataError
from fashion2stage.jsonspec import to_json
from fashion2stage.labels import LabelSet
from fashion2stage.runs import load_spec, save_config
from fashion2stage.specs import AttributeSpec, KeypointSpec, Normalisation
from fashion2stage.train_specs import AttributeTrainConfig, DetectTrainConfig, KeypointTrainConfig, TypeHeadConfig

STAGES = ("detector", "attributes", "keypoints")


@pytest.mark.parametrize("stage", STAGES)
def test_the_shipped_config_is_in_canonical_form_and_names_no_machine_folder(stage):
    path = default_bundle() / stage / "config.json"
    text = path.read_text()
    assert to_json(load_spec(path.parent, stage)) == json.loads(text)  # nothing dropped, nothing added on a load
    assert "../" not in text and "runs/" not in text and "/work" not in text and "fashion-bench/" in text


def _older(stage: str, config: dict) -> dict:
    """The file as the bundle shipped it before the specs: no stored normalisation, the attribute crop as
    ``crop_spec``."""
    if stage == "detector":
        config["model"].pop("normalisation")
    else:
        config.pop("normalisation")
    if stage == "attributes":
        config["crop_spec"] = config.pop("crop")
    return config


@pytest.mark.parametrize("stage", STAGES)
def test_an_older_config_reads_as_the_canonical_one(stage, tmp_path):
    run = tmp_path / stage
    shutil.copytree(default_bundle() / stage, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(_older(stage, config)))
    old, new = load_spec(run, stage), load_spec(default_bundle() / stage, stage)
    if stage == "detector":
        assert old.model.normalisation is None and old.model.norm == new.model.norm
        assert old.model.norm == Normalisation((0.5,) * 3, (0.5,) * 3)
    else:
        assert old.normalisation is None and old.norm == new.norm and old.crop == new.crop


def test_a_trainer_cannot_write_what_predict_would_refuse(tmp_path):
    good = {"kind": "keypoints", "backbone": "efficientnet_lite0", "num_keypoints": 2, "crop": {"width": 64,
                                                                                                 "height": 64}}
    save_config(tmp_path, good)
    spec = load_spec(tmp_path, "keypoints")
    assert isinstance(spec, KeypointSpec) and spec.crop.padding == 1.25 and spec.deconv_channels == (128, 128, 128)
    with pytest.raises(DataError, match=r"config\.json: field 'crop\.width' is 65; it must be a multiple of 32"):
        save_config(tmp_path, {**good, "crop": {"width": 65, "height": 64}})
    with pytest.raises(DataError, match="unknown key 'sigmaa'"):
        save_config(tmp_path, {**good, "sigmaa": 2.0})
    assert load_spec(tmp_path, "keypoints") == spec  # the refused ones were not written
    twice = LabelSet(garment_types=["blouse", "skirt", "blouse"])
    with pytest.raises(ValueError, match="'garment_types' names 'blouse' twice"):
        twice.save(tmp_path / "labels.json")
    assert not (tmp_path / "labels.json").exists()


def test_a_spec_built_in_code_round_trips():
    spec = AttributeSpec(backbone="efficientnet_lite0", keys=("a", "b"), crop=load_spec(
        default_bundle() / "attributes", "attributes").crop, normalisation=Normalisation.of_backbone("resnet18"))
    assert spec.norm.mean == (0.485, 0.456, 0.406)
    from fashion2stage.specs import spec_from_json
    assert spec_from_json(to_json(spec), "config.json") == spec


SETTINGS = {"detect_train": DetectTrainConfig, "classify_train": AttributeTrainConfig,
            "keypoints_train": KeypointTrainConfig, "type_head_train": TypeHeadConfig}


@pytest.mark.parametrize("command", SETTINGS)
def test_command_line_defaults_are_the_settings_defaults(command):
    """Every option named like a field of the command's settings class has that field's default (the keypoint
    crop and head options are written as text: 192x256, 128,128,128; a repeatable option's [] is "none given")."""
    cls = SETTINGS[command]
    defaults = {f.name: f.default for f in fields(cls)}
    compared = 0
    for name, param in inspect.signature(getattr(train_commands, command)).parameters.items():
        option = param.default.default
        if name in defaults and option is not ... and not isinstance(option, list):
            expected = defaults[name]
            if name == "image_size" and cls is KeypointTrainConfig:
                expected = f"{cls.width}x{cls.height}"
            assert option == expected or str(option) == str(expected), (command, name, option, expected)
            compared += 1
    assert compared >= 5
    if cls is KeypointTrainConfig:
        channels = inspect.signature(train_commands.keypoints_train).parameters["head_channels"].default.default
        assert channels == ",".join(map(str, KeypointTrainConfig(data="x").deconv_channels))


def test_the_detector_model_field_is_read_by_backend():
    """faster-rcnn: an object read as a FasterRCNNConfig; yolo: ultralytics' description of the network, or none."""
    from fashion2stage.specs import DetectorSpec, FasterRCNNConfig, spec_from_json

    yolo = {"kind": "detector", "backend": "yolo", "weights": "weights.safetensors", "model": {"nc": 2}}
    assert spec_from_json(yolo, "config.json").model == {"nc": 2}
    assert spec_from_json({**yolo, "model": None}, "config.json").model is None
    with pytest.raises(DataError, match="field 'model' is 'model.yaml'; it must be a JSON object"):
        spec_from_json({**yolo, "model": "model.yaml"}, "config.json")
    frcnn = {"kind": "detector", "backend": "faster-rcnn", "model": {"num_classes": 3}}
    spec = spec_from_json(frcnn, "config.json")
    assert isinstance(spec, DetectorSpec) and spec.model == FasterRCNNConfig(num_classes=3)
    with pytest.raises(DataError, match="field 'model.num_classes' is 1; it must be >= 2"):
        spec_from_json({**frcnn, "model": {"num_classes": 1}}, "config.json")
    with pytest.raises(DataError, match="lacks the field 'model'"):
        spec_from_json({**frcnn, "model": None}, "config.json")
    with pytest.raises(DataError, match="field 'kind' is 'detectors'; it must be one of detector, attributes, keypoints"):
        spec_from_json({**frcnn, "kind": "detectors"}, "config.json")
