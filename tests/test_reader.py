"""The Python API on the shipped model: ``Reader()(images)`` on paths, arrays and PIL images, as the CLI does it."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fashion2stage import Reader
from fashion2stage.app.cli import app
from fashion2stage.geometry import box_iou
from fashion2stage.images import load_image
from fashion2stage.results import ImagePrediction

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


@pytest.fixture(scope="module")
def reader():
    return Reader(conf=0.5)


@pytest.fixture(scope="module")
def examples(reader):
    return reader(sorted(EXAMPLES.glob("*.jpg")))


def test_import_of_the_package_stays_light():
    code = "import sys, fashion2stage; fashion2stage.ImagePrediction; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_paths_arrays_and_pil_images_give_the_same_prediction(reader, examples):
    path = sorted(EXAMPLES.glob("*.jpg"))[0]
    by_path = examples[0]
    by_array, by_pil = reader([load_image(path), Image.open(path)])
    assert by_path.image == str(path) and by_array.image == "<image 0>" and by_pil.image == "<image 1>"
    assert by_path.garments, "the sample photo shows garments"
    for other in (by_array, by_pil):  # the same pixels through the same code
        assert {**other.to_dict(), "image": ""} == {**by_path.to_dict(), "image": ""}
    assert by_path.orig_img.shape == (by_path.height, by_path.width, 3)


def test_unreadable_path_is_an_error_result_not_an_exception(reader, tmp_path, check_line):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    preds = reader([bad, tmp_path / "missing.jpg"])
    assert preds[0].to_dict() == {"image": str(bad), "error": "not an image (format not recognised)"}
    assert preds[1].error == "file not found"
    for p in preds:
        check_line(p.to_dict())
    one = reader(str(tmp_path / "missing.jpg"))  # one input, not in a list
    assert len(one) == 1 and one[0].image == str(tmp_path / "missing.jpg")


def test_bad_in_memory_input_is_refused_with_its_position(reader):
    with pytest.raises(ValueError, match="image 0: expected a uint8"):
        reader(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="image 1"):
        reader([np.zeros((8, 8, 3), np.uint8), 3])


def test_cli_lines_are_the_readers_to_json(examples, tmp_path, check_line):
    result = CliRunner().invoke(app, ["predict", str(EXAMPLES), "--out", str(tmp_path), "--conf", "0.5"])
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert [ImagePrediction.from_json(x).to_json() for x in raw] == raw  # the line, byte for byte
    lines = [json.loads(x) for x in raw]
    preds = examples
    assert len(lines) == len(preds) == 3
    for line, pred in zip(lines, preds):
        check_line(line)
        check_line(pred.to_dict())
        assert ImagePrediction.from_dict(line).to_dict() == line
        assert line["image"] == Path(pred.image).name and (line["width"], line["height"]) == (pred.width, pred.height)
        assert len(line["garments"]) == len(pred.garments) > 0
        iou = box_iou([g["box"] for g in line["garments"]], [g.box for g in pred.garments])
        for i, g in enumerate(line["garments"]):  # matched by IoU: equal scores may list in either order
            j = int(np.argmax(iou[i]))
            assert iou[i, j] > 0.99 and pred.garments[j].type == g["type"]
            np.testing.assert_allclose(pred.garments[j].attributes["fine_category"].probs,
                                       g["attributes"]["fine_category"]["probs"], atol=2e-3)


def test_plot_and_crops(examples):
    pred = examples[2]
    overlay = pred.plot()
    assert overlay.dtype == np.uint8 and overlay.shape[0] >= pred.height and overlay.shape[1] > pred.width
    np.testing.assert_array_equal(overlay[:20, :20], pred.orig_img[:20, :20])  # a corner no garment reaches
    crops = pred.crops()
    assert len(crops) == len(pred.garments) > 0 and all(c.shape == (224, 224, 3) for c in crops)


def test_the_shipped_models_fill_the_three_roles(reader):
    from fashion2stage.roles import AttributeClassifier, Detector, KeypointEstimator

    p = reader.pipeline
    assert isinstance(p.detector, Detector) and isinstance(p.attributes, AttributeClassifier)
    assert isinstance(p.keypoints, KeypointEstimator)


def test_a_folder_a_glob_and_a_list_stand_for_their_images(reader, examples, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{EXAMPLES / 'ccp_0117.jpg'}\nmissing.jpg\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    preds = reader([str(EXAMPLES), f"{EXAMPLES}/ccp_00*.jpg", listing, str(empty)])
    names = [p.image for p in preds]
    folder = [str(EXAMPLES / n) for n in ("ccp_0004.jpg", "ccp_0062.jpg", "ccp_0117.jpg")]
    assert names == folder + folder[:2] + [folder[2], str(tmp_path / "missing.jpg"), str(empty)]
    assert [p.ok for p in preds] == [True] * 6 + [False, False] and "no images found" in preds[-1].error
    assert preds[0].to_dict() == examples[0].to_dict() and preds[5].to_dict() == examples[2].to_dict()


def test_the_readmes_python_snippet_runs_with_an_unreadable_path(reader, tmp_path, monkeypatch):
    """The README's snippet, as written, on its two photos and one that cannot be read: no exception."""
    import contextlib
    import io
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"### From Python\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert "reader([" in code and "Reader()" in code
    code = code.replace('"examples/images/ccp_0062.jpg"]', '"examples/images/ccp_0062.jpg", "missing.jpg"]')
    code = code.replace("reader = Reader()", "reader = shipped")  # the fixture's model, loaded once
    for name in ("ccp_0004.jpg", "ccp_0062.jpg"):
        (tmp_path / "examples" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "examples" / "images" / name).symlink_to(EXAMPLES / name)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"shipped": reader})  # noqa: S102
    assert "missing.jpg file not found" in printed.getvalue()
    assert (tmp_path / "out" / "ccp_0062.jpg").is_file() and len(list((tmp_path / "out" / "crops").iterdir())) >= 2
