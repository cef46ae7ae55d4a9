"""One odd photo never costs another its answer (issue 28), on the shipped model: a valid photo too thin for the
detector (20000x1 pixels) among real photos through ``predict``, ``Reader``, the torch runtime and ``serve``; a batch
that raises is run again image by image; a large photo is read at the models' resolution and reported in its own
pixels."""
import dataclasses
import io
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from fashion2stage.app.cli import app
from fashion2stage.app.serve.app import create_app
from fashion2stage.app.serve.limits import Limits
from fashion2stage.geometry import box_iou
from fashion2stage.images import MAX_SIDE

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTOS = sorted(EXAMPLES.glob("*.jpg"))


def png(size, colour=(200, 120, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


THIN = png((20000, 1))  # 143 bytes; past about 665:1 the detector's resize gives it a side of 0 pixels


def assert_same_garments(a, b, scale=1.0, min_iou=0.99):
    """The garments of two predictions of the same photo, matched by IoU (``b``'s boxes times ``scale``)."""
    assert len(a.garments) == len(b.garments) > 0
    iou = box_iou([g.box for g in a.garments], [np.asarray(g.box) * scale for g in b.garments])
    for i, g in enumerate(a.garments):
        j = int(np.argmax(iou[i]))
        assert iou[i, j] > min_iou and b.garments[j].type == g.type, (i, iou[i, j])


def test_a_thin_photo_among_real_photos_gets_its_line_through_predict(tmp_path, check_line):
    images = tmp_path / "photos"
    images.mkdir()
    for p in PHOTOS:
        shutil.copy(p, images / p.name)
    (images / "thin.png").write_bytes(THIN)
    result = CliRunner().invoke(app, ["predict", "--images", str(images), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output[-2000:]
    lines = {x["image"]: check_line(x) for x in map(json.loads, (tmp_path / "out" / "predictions.jsonl").open())}
    assert set(lines) == {p.name for p in PHOTOS} | {"thin.png"}
    assert all(lines[p.name]["garments"] for p in PHOTOS)
    thin = lines["thin.png"]  # padded for the detector: a prediction in its own frame, not an error
    assert (thin["width"], thin["height"]) == (20000, 1) and "error" not in thin


def test_a_batch_that_raises_is_run_again_image_by_image(shipped_reader):
    """With the padding off, the thin photo makes the real detector raise: only it gets an error record, and the
    photos that shared its batch get the answers they get alone."""
    photo = np.asarray(Image.open(PHOTOS[0]).convert("RGB"))
    thin = np.asarray(Image.open(io.BytesIO(THIN)).convert("RGB"))
    unpadded = dataclasses.replace(shipped_reader.pipeline, max_aspect=None)
    alone = unpadded([photo], ["a"])[0]
    a, bad, b = unpadded([photo, thin, photo], ["a", "thin", "b"])
    assert bad.image == "thin" and bad.error.startswith("prediction failed: ") and "\n" not in bad.error
    assert a.to_dict() == alone.to_dict() and {**b.to_dict(), "image": "a"} == alone.to_dict()
    assert shipped_reader.pipeline([thin], ["thin"])[0].error is None  # padded (the default): predicted


def test_the_thin_photo_on_the_torch_runtime():
    from fashion2stage.app.pipeline import load_pipeline

    thin = np.asarray(Image.open(io.BytesIO(THIN)).convert("RGB"))
    pred = load_pipeline(runtime="torch")([thin, thin[:, :700]], ["thin", "700x1"])
    assert [(p.error, p.width, p.height) for p in pred] == [(None, 20000, 1), (None, 700, 1)]


def test_reader_gives_the_thin_photo_its_prediction(shipped_reader, tmp_path):
    (tmp_path / "thin.png").write_bytes(THIN)
    preds = shipped_reader([PHOTOS[1], tmp_path / "thin.png", PHOTOS[2]])
    assert [p.error for p in preds] == [None, None, None] and preds[0].garments and preds[2].garments
    assert (preds[1].width, preds[1].height) == (20000, 1)


def test_serve_answers_a_good_request_that_shares_a_batch_with_a_thin_photo(shipped_reader):
    """A first request takes the blocked model thread; the thin photo and a good photo, from two clients, then wait
    together and go to the model as one batch (max_wait_ms=0: a batch is what is queued when the model is free)."""
    app_ = create_app(lambda: shipped_reader, Limits(max_files=3, queue_size=4, max_batch=4, max_wait_ms=0))
    with TestClient(app_) as client:
        deadline = time.monotonic() + 120
        while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        batcher = app_.state.service.batcher
        release = threading.Event()
        blocker = batcher.worker.submit(release.wait, 600)  # holds the model thread until all three wait
        answers = {}

        def post(key, name, data, ctype):
            answers[key] = client.post("/v1/predict", files={"files": (name, data, ctype)})
        first = threading.Thread(target=post, args=("first", "first.png", png((48, 40)), "image/png"))
        threads = [threading.Thread(target=post, args=("thin", "thin.png", THIN, "image/png")),
                   threading.Thread(target=post, args=("good", PHOTOS[0].name, PHOTOS[0].read_bytes(), "image/jpeg"))]
        try:
            first.start()
            while (batcher.pending < 1 or batcher._queue.qsize()) and time.monotonic() < deadline:
                time.sleep(0.02)  # until the batcher has taken the first image (its batch waits for the model)
            for t in threads:
                t.start()
            while batcher.pending < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert batcher.pending == 3
        finally:
            release.set()
            for t in [first, *threads]:
                t.join(120)
        blocker.result()
        assert client.get("/healthz").json()["served"]["batches"] == 2  # first alone, then thin and good together
    for key in ("first", "thin", "good"):
        assert answers[key].status_code == 200, answers[key].text
    assert answers["good"].json()["predictions"][0]["garments"]
    assert answers["thin"].json()["predictions"][0]["width"] == 20000


def test_a_large_photo_is_read_at_the_models_resolution_and_reported_in_its_own_pixels(shipped_reader, tmp_path):
    small = shipped_reader([PHOTOS[2]])[0]
    big = tmp_path / "big.jpg"  # 2200x3308: over MAX_SIDE, decoded at half scale by libjpeg
    Image.open(PHOTOS[2]).resize((small.width * 4, small.height * 4), Image.LANCZOS).save(big, quality=95)
    pred = shipped_reader([big])[0]
    assert (pred.width, pred.height) == (small.width * 4, small.height * 4)
    assert max(pred.orig_img.shape[:2]) == MAX_SIDE
    assert_same_garments(pred, small, scale=4, min_iou=0.8)
    assert pred.plot().shape[0] >= MAX_SIDE and len(pred.crops()) == len(pred.garments)
