"""The HTTP service through FastAPI's TestClient, on the shipped model: the contract, every bad input, a full queue."""
import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fashion2stage.geometry import box_iou
from fashion2stage.results import ImagePrediction
from fashion2stage.app.serve.app import create_app
from fashion2stage.app.serve.limits import Limits

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"
PHOTO = EXAMPLES / "ccp_0062.jpg"


def wait_ready(client, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/healthz")
        if r.status_code == 200:
            return r.json()
        assert r.json()["status"] == "loading", r.json()
        time.sleep(0.05)
    raise AssertionError("the service never became ready")


@pytest.fixture(scope="module")
def client(shipped_reader):
    limits = Limits(max_file_bytes=200_000, max_files=3, max_pixels=4_000_000, queue_size=8)
    with TestClient(create_app(lambda: shipped_reader, limits)) as c:
        wait_ready(c)
        yield c


def jpeg_bytes(seed=0, size=(64, 48)):
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG")
    return buf.getvalue()


def png_header_only(width, height):
    """A PNG that claims width x height pixels in ~100 bytes: a decompression bomb, judged from its header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_healthz_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ready" and health["limits"]["max_files"] == 3 and health["queue"]["size"] == 8
    page = client.get("/")
    assert page.status_code == 200 and 'id="files"' in page.text and "page.js" in page.text
    assert "v1/predict" in client.get("/page.js").text
    spec = client.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]


def test_predict_contract(client, shipped_reader, check_line):
    files = [("files", ("a/../x/ccp_0062.jpg", PHOTO.read_bytes(), "image/jpeg")),
             ("files", ("tiny.png", png_of(Image.new("RGB", (40, 30), (200, 200, 200))), "image/png"))]
    r = client.post("/v1/predict", files=files)
    assert r.status_code == 200, r.text
    lines = r.json()["predictions"]
    assert [p["image"] for p in lines] == ["ccp_0062.jpg", "tiny.png"]  # upload order, no directory part
    assert (lines[1]["width"], lines[1]["height"]) == (40, 30)
    for line in lines:  # exactly a predictions.jsonl line
        assert ImagePrediction.from_dict(line).to_dict() == check_line(line)
    direct = shipped_reader([PHOTO])[0]  # the Python API on the file itself
    got = lines[0]
    assert (got["width"], got["height"]) == (direct.width, direct.height)
    assert len(got["garments"]) == len(direct.garments) > 0
    iou = box_iou([g["box"] for g in got["garments"]], [g.box for g in direct.garments])
    for i, g in enumerate(got["garments"]):  # matched by IoU: garments of equal score may come in either order
        j = int(np.argmax(iou[i]))
        assert iou[i, j] > 0.99 and direct.garments[j].type == g["type"]
    assert set(got["attributes"]) == set(direct.attributes)


def png_of(im):
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def one_line_error(r, status, *words):
    assert r.status_code == status, (r.status_code, r.text)
    message = r.json()["error"]
    assert "\n" not in message and all(w in message for w in words), message
    return message


def test_bad_inputs_are_4xx_with_one_line_and_the_server_keeps_serving(client):
    good = jpeg_bytes()
    truncated = good[: len(good) // 2]
    post = client.post
    one_line_error(post("/v1/predict", files={"files": ("notes.jpg", b"just some text\n", "image/jpeg")}),
                   400, "notes.jpg", "not an image")
    one_line_error(post("/v1/predict", files={"files": ("empty.jpg", b"", "image/jpeg")}), 400, "empty.jpg", "empty")
    one_line_error(post("/v1/predict", files={"files": ("cut.jpg", truncated, "image/jpeg")}),
                   400, "cut.jpg", "truncated")
    one_line_error(post("/v1/predict", files={"files": ("bomb.png", png_header_only(100_000, 100_000), "image/png")}),
                   413, "bomb.png", "too large")
    one_line_error(post("/v1/predict", files={"files": ("big.png", png_header_only(2100, 2000), "image/png")}),
                   413, "big.png", "4,200,000 pixels > the limit 4,000,000")
    one_line_error(post("/v1/predict", files={"files": ("huge.jpg", b"\xff" * 300_000, "image/jpeg")}),
                   413, "huge.jpg", "300,000 bytes > the limit 200,000")
    one_line_error(post("/v1/predict", files=[("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(4)]),
                   413, "too many files", "at most 3")
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    one_line_error(post("/v1/predict", content=b"x" * 700_000, headers=multipart),  # said so by Content-Length
                   413, "request body of 700,000 bytes > the limit")
    one_line_error(post("/v1/predict", content=iter([b"--b\r\n" + b"x" * 100_000] * 7), headers=multipart),
                   413, "request body over the limit")  # chunked: no Content-Length, stopped while it streams
    one_line_error(post("/v1/predict", json={"url": "http://example.com/photo.jpg"}), 415, "multipart/form-data",
                   "application/json")
    one_line_error(post("/v1/predict", files={"files": ("page.html", b"<html></html>", "text/html")}),
                   415, "page.html", "text/html is not an image")
    one_line_error(post("/v1/predict", data={"comment": "no file"}, files={}), 415)  # urlencoded: not multipart
    one_line_error(post("/v1/predict", content=b"--b\r\n\r\n--b--\r\n", headers=multipart), 400)
    one_line_error(client.get("/v1/predict"), 405)
    one_line_error(client.get("/no/such/page"), 404)
    # one bad file fails its whole request, naming it; the good file's neighbour is not predicted half-way
    one_line_error(post("/v1/predict", files=[("files", ("ok.jpg", good, "image/jpeg")),
                                              ("files", ("bad.jpg", truncated, "image/jpeg"))]), 400, "bad.jpg")
    after = post("/v1/predict", files={"files": ("ok.jpg", good, "image/jpeg")})
    assert after.status_code == 200 and after.json()["predictions"][0]["width"] == 64
    assert client.get("/healthz").json()["queue"]["pending"] == 0


def test_full_queue_answers_503_with_retry_after(shipped_reader):
    """A blocked model thread (a task occupying the worker that runs the real model), a queue of 3 images: what does
    not fit is refused at once, and everything admitted is answered once the model runs again."""
    app = create_app(lambda: shipped_reader, Limits(max_files=3, queue_size=3, max_batch=2))
    small = png_of(Image.new("RGB", (48, 40), (90, 120, 150)))
    with TestClient(app) as client:
        wait_ready(client)
        batcher = app.state.service.batcher
        release = threading.Event()
        blocker = batcher.worker.submit(release.wait, 600)  # released in finally; the timeout only bounds a bug
        answers = {}

        def post(key, n):
            answers[key] = client.post("/v1/predict", files=[("files", (f"{key}{i}.png", small, "image/png"))
                                                             for i in range(n)])
        threads = [threading.Thread(target=post, args=("a", 1)), threading.Thread(target=post, args=("b", 1))]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + 120
            while batcher.pending < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert batcher.pending == 2
            no_room = client.post("/v1/predict", files=[("files", (f"c{i}.png", small, "image/png")) for i in range(2)])
            message = one_line_error(no_room, 503, "server busy", "no room for 2")
            assert int(no_room.headers["retry-after"]) >= 1, message
            threads.append(threading.Thread(target=post, args=("d", 1)))  # fits: the queue is now full
            threads[-1].start()
            while batcher.pending < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            full = client.post("/v1/predict", files={"files": ("e.png", small, "image/png")})
            one_line_error(full, 503, "server busy", "3 images pending")
            assert int(full.headers["retry-after"]) >= 1
        finally:
            release.set()
            for t in threads:
                t.join(120)
        blocker.result()
        for key in ("a", "b", "d"):
            assert answers[key].status_code == 200, answers[key].text
            assert answers[key].json()["predictions"][0]["image"] == f"{key}0.png"
        health = client.get("/healthz").json()
        assert health["status"] == "ready" and health["queue"]["pending"] == 0
        # three requests, two model calls: the two that waited together went in one batch (max_batch=2)
        assert (health["served"]["batches"], health["served"]["images"]) == (2, 3)


def test_failed_model_load_is_reported():
    def load():
        raise FileNotFoundError("runs/nope: no config.json")
    stopped = []
    with TestClient(create_app(load, on_fatal=lambda: stopped.append(True))) as client:
        deadline = time.monotonic() + 10
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "failed"
        assert health.json()["error"] == "cannot load the models: runs/nope: no config.json"
        one_line_error(client.post("/v1/predict", files={"files": ("a.jpg", jpeg_bytes(), "image/jpeg")}), 503,
                       "models failed")
    assert stopped == [True]
