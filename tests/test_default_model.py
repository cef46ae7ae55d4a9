"""The shipped model bundle, as a user meets it: ``fashion2stage predict --images examples/images`` with no flags."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fashion2stage.app.cli import app
from fashion2stage.app.pipeline import default_bundle
from fashion2stage.runs import load_config, load_labels

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
TYPES = {"blouse", "outwear", "dress", "skirt", "trousers"}


def test_bundle_is_complete_and_small():
    total = 0
    for stage in ("detector", "attributes", "keypoints"):
        run = default_bundle() / stage
        assert load_config(run, kind=stage)
        assert load_labels(run).garment_types
        weights = run / "weights.safetensors"
        total += weights.stat().st_size
    assert total < 60 * 2**20  # "tens of MB in total"


@pytest.fixture(scope="module")
def predictions(tmp_path_factory, check_line):
    out = tmp_path_factory.mktemp("default") / "out"
    result = CliRunner().invoke(app, ["predict", "--images", str(EXAMPLES), "--out", str(out), "--overlays"])
    assert result.exit_code == 0, result.output
    # every line validates against docs/predictions.schema.json
    return out, [check_line(json.loads(line)) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_default_predict_follows_the_contract(predictions):
    out, lines = predictions
    assert [r["image"] for r in lines] == sorted(p.name for p in EXAMPLES.glob("*.jpg"))
    attr_labels = load_labels(default_bundle() / "attributes")
    kp_labels = load_labels(default_bundle() / "keypoints")
    for rec in lines:
        assert rec["width"] == 550 and 800 < rec["height"] < 900
        # every sample photo shows a person wearing at least an upper garment and a lower one
        types = {g["type"] for g in rec["garments"]}
        assert types <= TYPES and len(types) >= 2, rec["garments"]
        for g in rec["garments"]:
            x1, y1, x2, y2 = g["box"]
            assert -1 <= x1 < x2 <= rec["width"] + 1 and -1 <= y1 < y2 <= rec["height"] + 1
            assert set(g["attributes"]) == set(attr_labels.keys_for_type(g["type"]))
            for key, a in g["attributes"].items():
                # probs are rounded to 4 decimals, so two values can tie: the chosen one must be among the
                # highest within that rounding, not the first of them
                chosen = a["probs"][attr_labels.attributes[key].index(a["value"])]
                assert chosen >= max(a["probs"]) - 1e-4, (key, a)
                assert sum(a["probs"]) == pytest.approx(1, abs=2e-3)
            assert set(g["keypoints"]) == set(kp_labels.keypoints_per_type[g["type"]])
            reach = max(x2 - x1, y2 - y1)  # the padded crop spans less than this from the box centre
            for x, y, _ in g["keypoints"].values():  # image frame: inside the garment's crop, not the crop's pixels
                assert abs(x - (x1 + x2) / 2) < reach and abs(y - (y1 + y2) / 2) < reach
        assert set(rec["attributes"]) == set(attr_labels.attributes)
        for key, a in rec["attributes"].items():
            j = a["garment"]
            if j is not None:
                assert rec["garments"][j]["attributes"][key]["probs"] == a["probs"]
    assert len(list((out / "overlays").glob("*.jpg"))) == len(lines)


# tests/data/golden/predictions.jsonl: `fashion2stage predict --images examples/images --runtime torch` on the
# shipped bundle, written before the pipeline's redesign (issue 26) and kept since: any change to what predict
# answers must be a deliberate one, shown by rewriting that file in the same commit (the last: the keypoint model on
# the attribute model's backbone, issue 25, which changed the landmarks and nothing else)
GOLDEN = Path(__file__).resolve().parent / "data" / "golden" / "predictions.jsonl"


def test_default_predict_matches_the_golden_file(predictions):
    from golden import differences, read_lines

    out, _ = predictions
    assert differences(read_lines(GOLDEN), read_lines(out / "predictions.jsonl")) == []


def test_torch_runtime_matches_the_golden_file(tmp_path):
    from golden import differences, read_lines

    result = CliRunner().invoke(app, ["predict", "--images", str(EXAMPLES), "--out", str(tmp_path / "out"),
                                      "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    assert differences(read_lines(GOLDEN), read_lines(tmp_path / "out" / "predictions.jsonl")) == []


def test_the_golden_comparison_sees_a_change():
    from golden import differences, read_lines

    expected = read_lines(GOLDEN)
    changed = json.loads(json.dumps(expected))
    rec = next(iter(changed.values()))
    n = len(rec["garments"])
    rec["garments"] = rec["garments"][::-1]  # order alone is not a difference
    for a in rec["attributes"].values():
        a["garment"] = None if a["garment"] is None else n - 1 - a["garment"]
    assert differences(expected, changed) == []
    rec["garments"][0]["box"][0] += 5
    rec["garments"][-1]["attributes"][next(iter(rec["garments"][-1]["attributes"]))]["probs"][0] += 0.1
    assert len(differences(expected, changed)) == 2
