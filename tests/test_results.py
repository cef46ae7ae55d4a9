"""The typed results: the predictions.jsonl line they write, the line they read back, their overlay and crops."""
import json

import numpy as np
import pytest

from fashion2stage.geometry import CropSpec
from fashion2stage.results import AttributePrediction, GarmentPrediction, ImagePrediction

LINE = ('{"image":"sub/a.jpg","width":120,"height":80,"garments":[{"type":"blouse","score":0.91,'
        '"box":[10.5,4.0,60.25,70.0],"attributes":{"sleeve_length":{"value":"long","score":0.82,'
        '"probs":[0.05,0.13,0.82],"names":["none","short","long"]}},"keypoints":{"left_collar":[20.5,8.0,0.4]}},'
        '{"type":"skirt","score":0.5,"box":[70.0,40.0,110.0,79.0],"attributes":{},"keypoints":{}}],"attributes":'
        '{"sleeve_length":{"value":"long","score":0.82,"probs":[0.05,0.13,0.82],"names":["none","short","long"],'
        '"garment":0},"length":{"value":"short","score":0.6,"probs":[0.6,0.4],"names":["short","long"],'
        '"garment":null}}}')


def _dumps(d: dict) -> str:
    return json.dumps(d, separators=(",", ":"))


def test_a_line_reads_back_to_the_same_bytes(check_line):
    check_line(json.loads(LINE))
    pred = ImagePrediction.from_json(LINE)
    assert pred.to_json() == LINE and isinstance(pred.to_json(), str)
    assert ImagePrediction.from_dict(json.loads(LINE)) == pred and _dumps(pred.to_dict()) == LINE
    sleeve = pred.garments[0].attributes["sleeve_length"]
    assert sleeve == AttributePrediction("long", 0.82, [0.05, 0.13, 0.82], names=["none", "short", "long"])
    assert sleeve.by_name() == {"none": 0.05, "short": 0.13, "long": 0.82}
    assert pred.attributes["sleeve_length"].garment == 0 and pred.attributes["length"].garment is None
    assert pred.garments[0].keypoints["left_collar"] == (20.5, 8.0, 0.4)
    assert pred.orig_img is None


def test_error_lines_carry_the_image_and_the_problem_only(check_line):
    pred = ImagePrediction(image="bad.jpg", error="empty file (0 bytes)")
    check_line(pred.to_dict())
    assert pred.to_json() == '{"image":"bad.jpg","error":"empty file (0 bytes)"}'
    assert ImagePrediction.from_json(pred.to_json()) == pred
    with pytest.raises(TypeError, match="from_dict"):
        ImagePrediction.from_json(pred.to_dict())


def test_a_failed_image_is_safe_to_read():
    """Code written for good photos runs on a failed one: empty, well-typed fields, no KeyError."""
    pred = ImagePrediction.from_json('{"image":"bad.jpg","error":"file not found"}')
    assert not pred.ok and ImagePrediction.from_json(LINE).ok
    assert pred.garments == [] and pred.attributes == {} and (pred.width, pred.height) == (0, 0)
    assert pred.attributes.get("sleeve_length") is None and pred.summary() == []
    df = pred.to_df()
    assert len(df) == 0 and list(df.columns)[:4] == ["image", "garment", "type", "score"]
    with pytest.raises(ValueError, match="bad.jpg.*file not found"):
        pred.plot()


def test_line_written_before_names_still_reads():
    old = json.loads(LINE)
    for a in [old["garments"][0]["attributes"]["sleeve_length"], *old["attributes"].values()]:
        del a["names"]
    pred = ImagePrediction.from_dict(old)
    assert pred.attributes["length"].names == [] and pred.attributes["length"].value == "short"


def test_summary_and_dataframe_have_one_row_per_garment():
    pred = ImagePrediction.from_json(LINE)
    rows = pred.summary()
    assert rows[0] == {"image": "sub/a.jpg", "garment": 0, "type": "blouse", "score": 0.91, "x1": 10.5, "y1": 4.0,
                       "x2": 60.25, "y2": 70.0, "sleeve_length": "long", "sleeve_length_score": 0.82}
    df = pred.to_df()
    assert list(df["type"]) == ["blouse", "skirt"] and df.loc[1, "x2"] == 110.0
    assert df.loc[0, "sleeve_length"] == "long" and df["sleeve_length"].isna()[1]  # skirts carry no sleeves


def test_save_and_save_crops_write_images(tmp_path):
    from PIL import Image

    img = np.zeros((80, 120, 3), np.uint8)
    pred = ImagePrediction.from_json(LINE)
    pred.orig_img = img
    out = pred.save(tmp_path / "o" / "a.png")
    assert np.array_equal(np.asarray(Image.open(out)), pred.plot())
    paths = pred.save_crops(tmp_path / "crops", CropSpec(width=32, height=48))
    assert [p.name for p in paths] == ["a_1_blouse.jpg", "a_2_skirt.jpg"]
    assert all(Image.open(p).size == (32, 48) for p in paths)
    with pytest.raises(ValueError, match="unknown image suffix"):
        pred.save(tmp_path / "a.xyz")


def test_to_dict_rounds_to_the_contract_precision():
    g = GarmentPrediction("dress", 0.123456, [1.23456, 2.0, 30.009, 40.0], keypoints={"hem": (1.005001, 2.0, 0.33333)})
    assert g.to_dict()["score"] == 0.1235 and g.to_dict()["box"] == [1.23, 2.0, 30.01, 40.0]
    assert g.to_dict()["keypoints"]["hem"] == [1.01, 2.0, 0.3333]


def test_value_is_the_argmax_before_rounding():
    a = AttributePrediction.from_probs(["a", "b", "c"], np.array([0.40004, 0.40001, 0.19991]))
    assert a.value == "a" and a.probs == [0.40004, 0.40001, 0.19991] and a.score == 0.40004  # the model's numbers
    d = a.to_dict()  # rounded where it is written: tied after rounding, "a" was higher
    assert d["value"] == "a" and d["probs"] == [0.4, 0.4, 0.1999] and d["score"] == 0.4
    a = AttributePrediction.from_probs(["a", "b"], np.array([0.2, 0.8], np.float32), garment=3)
    assert (a.value, a.garment, a.names) == ("b", 3, ["a", "b"]) and a.to_dict(image_level=True)["garment"] == 3
    assert "garment" not in a.to_dict()


def test_plot_and_crops_use_the_kept_image():
    img = np.zeros((80, 120, 3), np.uint8)
    img[4:70, 10:60] = 200
    pred = ImagePrediction.from_json(LINE)
    with pytest.raises(ValueError, match="sub/a.jpg"):
        pred.plot()
    pred.orig_img = img
    overlay = pred.plot()
    # the photo at the top left, the attribute panel on its right (taller than this small photo: the canvas grows)
    assert overlay.dtype == np.uint8 and overlay.shape[0] >= 80 and overlay.shape[1] > 120 and overlay.shape[2] == 3
    assert not np.array_equal(overlay[:80, :120], img) and img.max() == 200  # drawn on a copy
    spec = CropSpec(width=32, height=48, padding=1.0)
    crops = pred.crops(spec)
    assert len(crops) == 2 and all(c.shape == (48, 32, 3) for c in crops)
    # the blouse box is the bright square; its unpadded crop at this aspect is mostly bright, centred
    assert crops[0][24, 16].tolist() == [200, 200, 200]


def test_the_schema_refuses_what_the_contract_forbids(check_line):
    import jsonschema

    good = json.loads(LINE)
    bad_lines = [
        {k: v for k, v in good.items() if k != "width"},  # a field missing
        {**good, "garments": [{**good["garments"][0], "box": [1, 2, 3]}]},  # a box of 3 numbers
        {**good, "attributes": {"length": {"value": "short", "score": 0.6, "probs": [0.6, 0.4],
                                           "names": ["short", "long"]}}},  # no "garment"
        {**good, "attributes": {"length": {"value": "short", "score": 0.6, "probs": [0.6, 0.4],
                                           "garment": None}}},  # no "names"
        {**good, "garments": [{**good["garments"][0], "score": 1.5}]},  # a score above 1
        {"image": "a.jpg", "error": "x", "width": 3},  # an error line with more than the error
    ]
    for line in bad_lines:
        with pytest.raises(jsonschema.ValidationError):
            check_line(line)


def test_box_labels_never_cover_each_other_even_when_crowded():
    from PIL import Image, ImageDraw

    from fashion2stage.plotting import _font, _labels, _place

    taken = []
    for _ in range(3):  # three garments with the same box: above, above at its right edge, inside the top
        x, y = _place([50, 60, 250, 200], (80, 20), taken, 400, 300)
        taken.append((x, y, x + 80, y + 20))
    assert taken[:2] == [(50, 40, 130, 60), (170, 40, 250, 60)]
    # 14 narrow garments side by side in a small photo: some labels shrink to their number, some go
    boxes = [[10 + 12 * i, 40 + 3 * i, 40 + 12 * i, 150 - 3 * i] for i in range(14)]
    pred = ImagePrediction(image="crowd.jpg", width=200, height=160,
                           garments=[GarmentPrediction("trousers", 0.9 - 0.01 * i, b) for i, b in enumerate(boxes)])
    labels = _labels(pred, boxes, ImageDraw.Draw(Image.new("RGB", (200, 160))), _font(18), 4, 200, 160)
    kinds = [len(text.split()) for _, text, _ in labels]
    assert kinds[0] == 3 and 1 in kinds and len(labels) < 14, labels  # full, number alone, none
    for i, (_, _, a) in enumerate(labels):
        assert 0 <= a[0] and a[2] <= 200 and 0 <= a[1] and a[3] <= 160
        for _, _, b in labels[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert pred.plot(np.zeros((160, 200, 3), np.uint8)).shape[1] > 200


def test_the_panel_lists_attributes_in_one_order_and_names_the_landmarks():
    from fashion2stage.plotting import _landmark_colours, _panel_rows

    def answer(score, garment=None):
        return AttributePrediction("x", score, [score, 1 - score], garment=garment, names=["x", "y"])
    pred = ImagePrediction(image="a.jpg", width=100, height=100, garments=[
        GarmentPrediction("blouse", 0.9, [0, 0, 50, 50], {"sleeve": answer(0.6), "collar": answer(0.9)},
                          {"left_collar": (5, 5, 1.0), "right_collar": (9, 5, 1.0)}),
        GarmentPrediction("blouse", 0.8, [50, 0, 99, 50], {"sleeve": answer(0.95), "collar": answer(0.55)},
                          {"left_collar": (55, 5, 1.0), "left_hem": (55, 45, 1.0)})],
        attributes={"collar": answer(0.9, 0), "sleeve": answer(0.6, 0)})
    marks = _landmark_colours(pred)
    rows = _panel_rows(pred, marks)
    attrs = [text.split(":")[0] for kind, _, text in rows if kind == "attr"]
    assert attrs == ["collar", "sleeve", "collar", "sleeve"]  # the model's order, whatever the scores
    legend = rows[rows.index(("head", None, "landmarks")) + 1:]
    assert [text for _, _, text in legend] == ["left_collar", "right_collar", "left_hem"]
    assert len({colour for _, colour, _ in legend}) == 3  # one dot colour per landmark name
