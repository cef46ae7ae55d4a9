"""End to end on tiny real models: detect-train, classify-train and keypoints-train on synthetic garments, then
``predict`` (output contract, bad files, resume, optional writers), ``evaluate`` and the ONNX Runtime path."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from classifiers.onnx_cache import CACHE_ENV
from fashion2stage.app.cli import app
from fashion2stage.app.pipeline import load_pipeline
from fashion2stage.images import load_image
from fashion2stage.nets import TorchNet
from fashion2stage.io import folder_lock
from pipeline_compare import CONF, _assert_same_predictions
from tiny_models import _cli

pytestmark = pytest.mark.slow

def _lines(jsonl: Path, check_line) -> list[dict]:
    """The lines of a predictions.jsonl, each validated against docs/predictions.schema.json."""
    return [check_line(json.loads(line)) for line in jsonl.read_text().splitlines()]


def _predict(models, check_line, out: Path, *extra: str) -> list[dict]:
    r = models["runs"]
    _cli("predict", "--images", models["images"], "--out", out, "--detector", r / "det", "--classifier", r / "attr",
         "--keypoints", r / "kp", "--no-default", "--conf", "0.01", "--batch-size", "3", *extra)
    return _lines(out / "predictions.jsonl", check_line)


def test_predictions_follow_the_output_contract(models, tmp_path, check_line):
    lines = _predict(models, check_line, tmp_path / "out", "--coco", "--fashionai-csv", "--keypoint-csv", "--overlays")
    expected = sorted(p.relative_to(models["images"]).as_posix() for p in models["images"].rglob("*.png"))
    assert [rec["image"] for rec in lines] == expected  # input order, relative paths, sub-folders included
    n_garments = 0
    for rec in lines:
        assert (rec["width"], rec["height"]) == (96, 96)
        for g in rec["garments"]:
            n_garments += 1
            assert g["type"] in ("blouse", "skirt") and 0.01 <= g["score"] <= 1
            x1, y1, x2, y2 = g["box"]
            assert x1 < x2 and y1 < y2
            a = g["attributes"]["pattern"]
            assert a["value"] in ("plain", "striped") and len(a["probs"]) == 2
            assert a["score"] == max(a["probs"]) and sum(a["probs"]) == pytest.approx(1, abs=1e-3)
            assert set(g["keypoints"]) == {"left_top", "right_top", "centre"}
            for x, y, s in g["keypoints"].values():
                assert -96 < x < 192 and -96 < y < 192  # image frame (crops are padded beyond the image)
        answer = rec["attributes"]["pattern"]
        if rec["garments"]:
            best = max(range(len(rec["garments"])), key=lambda j: rec["garments"][j]["score"])
            assert answer["garment"] == best
            assert answer["probs"] == rec["garments"][best]["attributes"]["pattern"]["probs"]
        else:
            assert answer["garment"] is None
    assert n_garments > 0
    out = tmp_path / "out"
    coco = json.loads((out / "detections_coco.json").read_text())
    assert len(coco) == n_garments and {c["category_id"] for c in coco} <= {1, 2}
    assert len((out / "fashionai_attributes.csv").read_text().splitlines()) == len(lines)
    assert len((out / "fashionai_keypoints.csv").read_text().splitlines()) == n_garments + 1
    assert len(list((out / "overlays").rglob("*.jpg"))) == len(lines)


def test_bad_files_are_reported_and_skipped(models, tmp_path, check_line):
    images = tmp_path / "mixed"
    images.mkdir()
    good = sorted(models["images"].glob("*.png"))[:2]
    for p in good:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("not an image")
    (images / "cut.png").write_bytes(good[0].read_bytes()[:200])
    r = models["runs"]
    result = CliRunner().invoke(app, ["predict", "--images", str(images), "--out", str(tmp_path / "o"),
                                      "--detector", str(r / "det"), "--classifier", str(r / "attr"), "--no-default"])
    assert result.exit_code == 0, result.output
    assert "3 unreadable" in result.output and "skipped empty.jpg" in result.output
    lines = _lines(tmp_path / "o" / "predictions.jsonl", check_line)
    errors = {x["image"]: x["error"] for x in lines if "error" in x}
    assert set(errors) == {"empty.jpg", "text.jpg", "cut.png"}
    assert "empty" in errors["empty.jpg"] and "not an image" in errors["text.jpg"]
    assert sum("garments" in x for x in lines) == 2


def test_resume_skips_done_images_and_drops_a_torn_line(models, tmp_path, check_line):
    full = _predict(models, check_line, tmp_path / "a")
    out = tmp_path / "b"
    out.mkdir()
    text = (tmp_path / "a" / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(text[:2]) + text[2][: len(text[2]) // 2])  # killed mid-line
    resumed = _predict(models, check_line, out, "--resume")
    assert [x["image"] for x in resumed] == [x["image"] for x in full]
    assert resumed[:2] == full[:2]  # kept as they were
    # redone in other batches: equal up to float noise of batch composition
    _assert_same_predictions(full[2:], resumed[2:], box_atol=0.05, prob_atol=1e-3)


def test_clear_errors_for_bad_folders_and_runs(models, tmp_path):
    r = models["runs"]
    (tmp_path / "empty").mkdir()
    for images, det, expect in ((tmp_path / "empty", r / "det", "no images found"),
                                (tmp_path / "missing", r / "det", "no such file or folder"),
                                (models["images"], r / "attr", "expected a 'detector' run")):
        result = CliRunner().invoke(app, ["predict", "--images", str(images), "--out", str(tmp_path / "o"),
                                          "--detector", str(det), "--no-default"])
        assert result.exit_code == 1 and expect in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG), as on a full disk (ENOSPC)
resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY))
from fashion2stage.app.cli import app
app()
"""


def test_a_locked_out_a_bad_resume_line_and_a_failed_write_are_one_line_naming_the_file(models, tmp_path):
    r = models["runs"]
    out = tmp_path / "o"
    args = ["predict", "--images", models["images"], "--out", out, "--detector", r / "det", "--classifier",
            r / "attr", "--keypoints", r / "kp", "--no-default", "--runtime", "torch"]
    out.mkdir()
    with folder_lock(out / ".predictions.jsonl.lock", "held"):  # another writer (its own open file: refused too)
        locked = CliRunner().invoke(app, [str(a) for a in args])
    (out / "predictions.jsonl").write_text('{"image": "val_0.png", "error": "x"}\n[1, 2]\n')
    bad_line = CliRunner().invoke(app, [str(a) for a in args] + ["--resume"])
    full = subprocess.run([sys.executable, "-c", FULL_DISK, *map(str, args)], capture_output=True, text=True)
    jsonl = out / "predictions.jsonl"
    for result, code, expect in ((locked, locked.exit_code, f"{jsonl} is being written by another process"),
                                 (bad_line, bad_line.exit_code, f"{jsonl}:2: not a predictions line"),
                                 (full, full.returncode, f"File too large: '{jsonl}'")):
        output = result.output if hasattr(result, "exit_code") else result.stderr
        assert code == 1, output[-3000:]
        # one line says it (the rest of stderr is the progress bar's)
        assert "Traceback" not in output and sum(expect in line for line in output.splitlines()) == 1, output[-3000:]


def test_evaluate_scores_the_predictions(models, tmp_path, check_line):
    _predict(models, check_line, tmp_path / "out")
    # the val images were copied flat and into sub/: point the labels at the same folder layout
    gt = json.loads(models["val"].read_text())
    for i, im in enumerate(sorted(gt["images"], key=lambda x: x["file_name"])):
        im["file_name"] = ("sub/" if i % 2 else "") + im["file_name"]
    labels = tmp_path / "gt.json"
    labels.write_text(json.dumps(gt))
    out = _cli("evaluate", "--predictions", tmp_path / "out" / "predictions.jsonl", "--boxes", labels,
               "--keypoint-labels", labels, "--images-root", models["images"])
    assert "detection: mAP" in out and "keypoints: NE" in out
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert 0 <= report["detection"]["map"] <= report["detection"]["map50"] <= 1
    assert set(report["garment_attributes"]["keys"]) == {"pattern"}
    assert report["keypoints"]["n_samples"] == 8


def test_evaluate_predicts_only_the_labelled_images(models, tmp_path, check_line):
    gt = json.loads(models["val"].read_text())
    for i, im in enumerate(sorted(gt["images"], key=lambda x: x["file_name"])):
        im["file_name"] = ("sub/" if i % 2 else "") + im["file_name"]
    dropped = gt["images"].pop()  # its photo stays in the folder, unlabelled
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != dropped["id"]]
    labels = tmp_path / "gt.json"
    labels.write_text(json.dumps(gt))
    r = models["runs"]
    out = _cli("evaluate", "--images", models["images"], "--out", tmp_path / "ev", "--boxes", labels,
               "--images-root", models["images"], "--detector", r / "det", "--classifier", r / "attr",
               "--keypoints", r / "kp")
    assert "detection: mAP" in out
    predicted = [line["image"] for line in _lines(tmp_path / "ev" / "predictions.jsonl", check_line)]
    assert predicted == sorted(im["file_name"] for im in gt["images"]) and dropped["file_name"] not in predicted


def test_onnx_runtime_is_the_default_exported_once_and_agrees_with_torch(models, tmp_path, check_line, caplog,
                                                                         monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # an empty cache: the first predict exports
    torch_lines = _predict(models, check_line, tmp_path / "t", "--runtime", "torch")
    default_lines = _predict(models, check_line, tmp_path / "d")
    exported = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert exported == ["attributes", "detector", "keypoints"]
    assert sum("exporting" in r.getMessage() for r in caplog.records) == 3
    _assert_same_predictions(torch_lines, default_lines, box_atol=0.5, prob_atol=2e-3)
    caplog.clear()
    onnx_lines = _predict(models, check_line, tmp_path / "o", "--runtime", "onnx")  # reuses the exports
    assert not [r for r in caplog.records if "exporting" in r.getMessage()]
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 3
    _assert_same_predictions(default_lines, onnx_lines, box_atol=1e-6, prob_atol=1e-6)


def test_export_command_still_writes_the_run_folders_onnx_file(models, tmp_path):
    kp = tmp_path / "kp"
    shutil.copytree(models["runs"] / "kp", kp)
    _cli("export", kp)
    assert (kp / "model.onnx").stat().st_size > 1000


def test_onnx_failure_falls_back_to_torch_with_one_line_per_model(models, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker))  # the cache folder cannot be made: every export fails
    r = models["runs"]
    pipe = load_pipeline(r / "det", r / "attr", r / "kp", use_default=False)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert len(warnings) == 3 and all("stays on torch" in w and "\n" not in w for w in warnings), warnings
    assert type(pipe.detector).__name__ == "FasterRCNNDetector"
    assert all(isinstance(m.net, TorchNet) for m in (pipe.detector, pipe.attributes, pipe.keypoints))
    result = CliRunner().invoke(app, ["predict", "--images", str(models["images"]), "--out", str(tmp_path / "o"),
                                      "--detector", str(r / "det"), "--no-default", "--runtime", "onnx"])
    assert result.exit_code == 1 and "cannot run the detector model on ONNX Runtime" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_keypoints_run_only_for_types_with_landmarks_after_the_attribute_stage(models, monkeypatch):
    """The type that decides is the one the attribute stage leaves (it may re-label a garment), not the detector's."""
    r = models["runs"]
    pipe = load_pipeline(r / "det", r / "attr", r / "kp", use_default=False, runtime="torch", conf=0.01)
    images = [load_image(p) for p in sorted(models["images"].rglob("*.png"))]
    pipe.keypoints.labels.keypoints_per_type["skirt"] = []  # a label set whose skirts have no landmarks
    seen: list[str] = []
    real_predict, real_attributes = pipe.keypoints.predict, pipe._attributes

    def counting(crops, types, **kw):  # the real model, recording which types reach it
        seen.extend(types)
        return real_predict(crops, types, **kw)

    def relabelling(preds, votes):  # the real attribute stage, then every 2nd garment record swaps type
        real_attributes(preds, votes)
        for n, g in enumerate(g for p in preds for g in p.garments):
            if n % 2:
                g.type = {"skirt": "blouse", "blouse": "skirt"}[g.type]

    monkeypatch.setattr(pipe.keypoints, "predict", counting)
    monkeypatch.setattr(pipe, "_attributes", relabelling)
    preds = pipe(images)
    garments = [g for p in preds for g in p.garments]
    assert {g.type for g in garments} == {"blouse", "skirt"} and seen
    assert set(seen) == {"blouse"} and len(seen) == sum(g.type == "blouse" for g in garments)
    for g in garments:
        assert set(g.keypoints) == (set() if g.type == "skirt" else {"left_top", "right_top", "centre"})


def test_photo_kind_head_fitted_then_judging_each_photo(models, tmp_path, check_line):
    """photo-kind-train on tiny photos of one item (a red rectangle on grey) against the fixture's photos of two
    garments; predict then reads each photo as the head judges it, and --single-item / --multi-item force it."""
    def one_item(folder, n, seed):
        rng = np.random.default_rng(seed)
        folder.mkdir(parents=True)
        for i in range(n):
            img = np.full((96, 96, 3), 128, np.uint8)
            x, y = (int(v) for v in rng.integers(8, 30, 2))
            img[y:y + 50, x:x + 40] = (220, 40, 40)
            cv2.imwrite(str(folder / f"item_{i}.png"), img[:, :, ::-1])
        return folder
    r, data = models["runs"], models["root"] / "data"
    single, val_single = one_item(tmp_path / "single", 6, 0), one_item(tmp_path / "val_single", 4, 1)
    out = _cli("photo-kind-train", "--classifier", r / "attr", "--detector", r / "det", "--conf", CONF,
               "--single", single, "--multi", data / "annotations" / "train.json", "--val-single", val_single,
               "--val-multi", models["val"], "--c", "1.0", "--out", r / "attr-kind", "--cache", tmp_path / "cache")
    assert "threshold" in out
    head = json.loads((r / "attr-kind" / "config.json").read_text())["photo_kind_head"]
    assert head["classes"] == ["multi_item", "single_item"] and 0 < head["threshold"] < 1
    assert head["photos"] == {str(single): 6, str(data / "annotations" / "train.json"): 6}
    assert (r / "attr-kind" / "labels.json").is_file()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in [*sorted(val_single.glob("*.png"))[:2], *sorted(models["images"].glob("*.png"))[:2]]:
        (mixed / p.name).write_bytes(p.read_bytes())

    def predict(name, *more):
        _cli("predict", "--images", mixed, "--out", tmp_path / name, "--detector", r / "det", "--classifier",
             r / "attr-kind", "--keypoints", r / "kp", "--no-default", "--conf", CONF, *more)
        return _lines(tmp_path / name / "predictions.jsonl", check_line)

    auto, multi, one = predict("auto"), predict("multi", "--multi-item"), predict("single", "--single-item")
    for a, m, s in zip(auto, multi, one):
        kind = a["photo_kind"]
        assert kind["by"] == "model" and (kind["value"] == "single_item") == (kind["p_single"] >= head["threshold"])
        assert m["photo_kind"] == {**kind, "value": "multi_item", "by": "flag"}
        assert s["photo_kind"] == {**kind, "value": "single_item", "by": "flag"}
        assert len(s["garments"]) <= 1
        assert a == (s if kind["value"] == "single_item" else m) | {"photo_kind": kind}  # the rule it was judged to
    # the head separates these photos: the items read as one item, the fixture's photos as several
    assert [a["photo_kind"]["value"] for a in auto] == ["single_item"] * 2 + ["multi_item"] * 2
    assert sum(len(m["garments"]) for m in multi[2:]) > 2
