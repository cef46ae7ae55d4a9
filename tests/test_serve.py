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
    assert health["conf"] == 0.5 and health["uploads"] == {"open": 0, "size": 64}
    assert health["limits"]["peak_bytes"] == Limits(max_file_bytes=200_000, max_files=3, max_pixels=4_000_000,
                                                    queue_size=8).peak_bytes()
    page = client.get("/")
    assert page.status_code == 200 and 'id="files"' in page.text and "page.js" in page.text
    assert 'rel="icon" href="favicon.ico"' in page.text
    assert "v1/predict" in client.get("/page.js").text
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).size == (32, 32)
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
    # conf is the request's: at 0.9 the garments are those of 0.5 that score 0.9 or more (their garment check
    # at 0.9 too), and the server's own threshold is untouched afterwards
    strict = client.post("/v1/predict?conf=0.9", files=files[:1])
    assert strict.status_code == 200, strict.text
    kept = strict.json()["predictions"][0]["garments"]
    assert len(kept) < len(got["garments"]) and all(g["score"] >= 0.9 for g in kept)
    if kept:
        iou = box_iou([g["box"] for g in kept], [g["box"] for g in got["garments"]])
        assert (iou.max(axis=1) > 0.99).all()
    assert shipped_reader.pipeline.conf == 0.5 and client.get("/healthz").json()["conf"] == 0.5
    for bad in ("abc", "1.5", "-0.1", "nan", "inf", ""):
        one_line_error(client.post(f"/v1/predict?conf={bad}", files=files[:1]), 422, "conf")


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
    # a request none of whose files can be read also carries each file's error line
    r = post("/v1/predict", files=[("files", ("a.jpg", b"", "image/jpeg")),
                                   ("files", ("b.jpg", truncated, "image/jpeg"))])
    one_line_error(r, 400, "none of the 2 files could be read: a.jpg: empty file", "; b.jpg: corrupt or truncated")
    assert [p["image"] for p in r.json()["predictions"]] == ["a.jpg", "b.jpg"]
    assert client.get("/healthz").json()["queue"]["pending"] == 0


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nnewpath 0 0 moveto 8 8 lineto stroke\n"


def multipart(*parts):
    """A multipart body by hand, so that file names can carry the bytes clients really send (NUL, escapes)."""
    body = b"".join(b'--b\r\nContent-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
                    b"Content-Type: " + ctype + b"\r\n\r\n" + data + b"\r\n" for name, ctype, data in parts)
    return body + b"--b--\r\n", {"content-type": "multipart/form-data; boundary=b"}


def test_a_bad_file_gets_its_error_line_and_the_others_their_predictions(client):
    """As predict gives every photo a line: the good files of a request are read whatever its other files are
    (issue 27). Control characters in names are written as escapes (issue 28)."""
    good = png_of(Image.new("RGB", (40, 30), (200, 200, 200)))
    body, headers = multipart(("a\x00b\x1b[31m\x7f\t\u202egnp.png".encode(), b"image/png", good),
                              (b"cut.jpg", b"image/jpeg", jpeg_bytes()[:1000]),
                              (b"page.html", b"text/html", b"<html></html>"))
    r = client.post("/v1/predict", content=body, headers=headers)
    assert r.status_code == 200, r.text
    first, cut, page = r.json()["predictions"]
    assert (first["image"], first["width"], first["height"]) == ("a\\x00b\\x1b[31m\\x7f\\x09\u202egnp.png", 40, 30)
    assert cut == {"image": "cut.jpg", "error": cut["error"]} and "truncated" in cut["error"]
    assert page == {"image": "page.html", "error": "content type text/html is not an image"}
    body, headers = multipart((b"big.jpg", b"image/jpeg", b"\xff" * 200_001), (b"ok.png", b"image/png", good))
    r = client.post("/v1/predict", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["predictions"][1]["width"] == 40, r.text
    assert r.json()["predictions"][0] == {"image": "big.jpg", "error": "200,001 bytes > the limit 200,000"}


def test_eps_is_refused_by_its_format(client):
    """PIL would hand EPS/PostScript to Ghostscript where it is installed: the service decodes through
    images.load_image_bytes, whose allow-list refuses it before any decoder runs."""
    r = client.post("/v1/predict", files={"files": ("drawing.eps", EPS, "image/x-eps")})
    message = one_line_error(r, 400, "drawing.eps", "EPS")
    assert "ghostscript" not in message.lower()


def start_until_pending(threads, batcher, n) -> float:
    """Start the posting threads; return once ``n`` images wait in the (blocked) batcher, or its 120 s deadline."""
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while batcher.pending < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return deadline


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
            deadline = start_until_pending(threads, batcher, 2)
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
        # three requests, two model calls of at most max_batch=2 images: a and b waited together, or a went alone
        # (its batch closed after 5 ms) and b went with d
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


def test_an_image_the_models_cannot_take_costs_no_other_request_its_answer(shipped_reader):
    """A 20000 x 1 photo (issue 28: it made ONNX Runtime raise for its whole batch) in one batch with another
    request's good photo: the good one is answered 200, and the thin one gets a prediction or its own error line."""
    thin = png_of(Image.new("RGB", (20000, 1), (120, 120, 120)))
    # max_batch 3 and a long max_wait: the batcher's first image waits for the other two however the requests'
    # arrivals interleave (with the default 5 ms, the first request's images could leave as a batch of their own)
    app = create_app(lambda: shipped_reader, Limits(max_files=2, queue_size=4, max_batch=3, max_wait_ms=600_000))
    with TestClient(app) as client:
        wait_ready(client)
        batcher = app.state.service.batcher
        release = threading.Event()
        blocker = batcher.worker.submit(release.wait, 600)  # both requests wait, then go in one batch
        answers = {}

        def post(key, files):
            answers[key] = client.post("/v1/predict", files=files)
        threads = [threading.Thread(target=post, args=("mixed", [("files", ("thin.png", thin, "image/png")),
                                                                 ("files", ("a.png", png_of(Image.new(
                                                                     "RGB", (48, 40))), "image/png"))])),
                   threading.Thread(target=post, args=("other", {"files": ("b.png", png_of(Image.new(
                       "RGB", (48, 40), (9, 9, 9))), "image/png")}))]
        try:
            start_until_pending(threads, batcher, 3)
        finally:
            release.set()
            for t in threads:
                t.join(300)
        blocker.result()
        assert batcher.batches == 1
    assert answers["other"].status_code == 200 and answers["other"].json()["predictions"][0]["width"] == 48
    thin_line, good_line = answers["mixed"].json()["predictions"]
    assert answers["mixed"].status_code == 200 and good_line["width"] == 48
    assert thin_line["image"] == "thin.png" and ("error" in thin_line or thin_line["width"] == 20000), thin_line
