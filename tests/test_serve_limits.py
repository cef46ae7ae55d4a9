"""The service under slow, leaving and numerous clients, and its memory bound: a real uvicorn server on loopback in a
thread (the protocol with the read timeout and the connection cap is the one ``fashion2stage serve`` runs), the
shipped model, raw sockets for the clients that misbehave. Every wait is bounded; a bug shows as a failed bound.
"""
import contextlib
import ctypes
import gc
import io
import json
import logging
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from fashion2stage.app.serve.app import create_app
from fashion2stage.app.serve.limits import Limits
from fashion2stage.app.serve.server import build_server

pytestmark = pytest.mark.slow

STALLED_UPLOAD = (b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=files; filename=a.jpg"
                  b"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff")  # then nothing more


@contextlib.contextmanager
def running(reader, limits):
    """A ready server on a free loopback port: yields (url, port, server, thread)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(lambda: reader, limits)
    server = build_server(app, limits, log_config=None)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=10).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the server did not become ready")
        yield url, port, server, thread
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def connect(port, data=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)  # the timeout only bounds a bug
    if data:
        s.sendall(data)
    return s


def answer(s):
    """Read a raw socket's whole answer until the server closes it: (status, lower-case headers, JSON body)."""
    data = b""
    with s:
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def wait_for(condition, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def png_bytes(size=(48, 40)):
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(buf, "PNG")
    return buf.getvalue()


def test_slow_uploads_get_408_and_free_their_slots_while_healthz_answers(shipped_reader):
    limits = Limits(max_uploads=2, max_connections=8, read_timeout_s=4.0)
    with running(shipped_reader, limits) as (url, port, server, _):
        service = server.config.app.state.service
        stalled = [connect(port, STALLED_UPLOAD) for _ in range(2)]
        slow_headers = connect(port, b"GET /healthz HTTP/1.1\r\nHo")  # a header line, then nothing
        wait_for(lambda: service.uploads == 2, "both uploads admitted")
        health = httpx.get(f"{url}/healthz", timeout=30)  # every upload slot is taken: /healthz still answers
        assert health.status_code == 200 and health.json()["uploads"] == {"open": 2, "size": 2}
        busy = httpx.post(f"{url}/v1/predict", files={"files": ("c.png", png_bytes(), "image/png")}, timeout=30)
        assert busy.status_code == 503 and busy.json() == {"error": "server busy: 2 uploads open"}
        assert int(busy.headers["retry-after"]) >= 1
        for s in stalled + [slow_headers]:  # the read timeout answers each and closes it
            status, headers, body = answer(s)
            assert (status, headers["content-type"], headers["connection"]) == (408, "application/json", "close")
            assert body == {"error": "request not received within 4 s"}
        wait_for(lambda: service.uploads == 0, "the slots freed")
        ok = httpx.post(f"{url}/v1/predict", files={"files": ("d.png", png_bytes(), "image/png")}, timeout=120)
        assert ok.status_code == 200 and ok.json()["predictions"][0]["image"] == "d.png"


def test_connections_past_the_cap_get_503_json_with_retry_after(shipped_reader):
    limits = Limits(max_uploads=1, max_connections=3, read_timeout_s=60.0)
    with running(shipped_reader, limits) as (url, port, server, _):
        wait_for(lambda: not server.server_state.connections, "the readiness checks' connections closed")
        held = [connect(port) for _ in range(3)]
        wait_for(lambda: len(server.server_state.connections) == 3, "three connections open")
        status, headers, body = answer(connect(port))
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert body == {"error": "server busy: 3 connections open"}
        for s in held:
            s.close()
        wait_for(lambda: not server.server_state.connections, "the held connections closed")
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200


def test_a_client_leaving_mid_upload_is_one_log_line(shipped_reader, caplog):
    caplog.set_level(logging.INFO)
    with running(shipped_reader, Limits(read_timeout_s=60.0)) as (url, port, server, _):
        service = server.config.app.state.service
        s = connect(port, STALLED_UPLOAD)
        wait_for(lambda: service.uploads == 1, "the upload admitted")
        s.close()
        wait_for(lambda: service.uploads == 0, "the upload given up")
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    ours = [r for r in caplog.records if "upload" in r.getMessage() and r.name == "fashion2stage.app.serve"]
    assert len(ours) == 1, [r.getMessage() for r in ours]
    assert ours[0].getMessage().endswith("upload not completed: the client disconnected")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


def test_shutdown_drops_an_idle_upload_after_its_bound(shipped_reader, caplog):
    caplog.set_level(logging.INFO)
    limits = Limits(read_timeout_s=300.0, shutdown_timeout_s=1.0)
    with running(shipped_reader, limits) as (url, port, server, thread):
        service = server.config.app.state.service
        s = connect(port, STALLED_UPLOAD)
        wait_for(lambda: service.uploads == 1, "the upload admitted")
        server.should_exit = True  # what SIGTERM does (test_serve_process.py sends the signal itself)
        thread.join(60)
        assert not thread.is_alive(), "an idle upload kept the server from stopping"
        status, _, body = answer(s)
        assert (status, body) == (503, {"error": "server shutting down"})
    assert any(r.getMessage().endswith("upload not completed: dropped at shutdown") for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def _memory() -> dict:
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(status[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def _rest() -> int:
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    return _memory()["VmRSS"]


def _smooth_jpeg(seed, side):
    """A photo-like JPEG (smooth colours, so a few hundred KB) of side x side pixels."""
    small = np.random.default_rng(seed).integers(0, 256, (side // 50, side // 50, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.BILINEAR).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def test_concurrent_large_photos_stay_under_the_documented_peak_and_memory_comes_back(shipped_reader):
    """3 concurrent requests of 3 photos of 4 MP each: the process's peak above its resting size stays under
    Limits.peak_bytes() (docs/serve.md), and its size comes back near rest. Before the decoding moved into the
    batches and ONNX Runtime lost its arena, the photos were all decoded at once and the arena kept the detector's
    largest input for good."""
    try:
        open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM, the peak resident size
    except OSError:
        pytest.skip("no /proc/self/clear_refs to reset the peak resident size")
    limits = Limits(max_pixels=4_000_000, max_files=3, max_batch=2, queue_size=9, max_uploads=4, max_connections=8)
    photos = [_smooth_jpeg(seed, 2000) for seed in range(3)]
    with running(shipped_reader, limits) as (url, _, _, _):
        answers = {}

        def post(k):
            files = [("files", (f"{k}-{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
            answers[k] = httpx.post(f"{url}/v1/predict", files=files, timeout=600)

        clients = [threading.Thread(target=post, args=(k,)) for k in range(3)]
        rest = _rest()
        open("/proc/self/clear_refs", "w").write("5")
        for t in clients:
            t.start()
        for t in clients:
            t.join(600)
        peak = _memory()["VmHWM"] - rest
        after = _rest() - rest
    for k in range(3):
        assert answers[k].status_code == 200, answers[k].text
        assert [(p["image"], p["width"]) for p in answers[k].json()["predictions"]] == [
            (f"{k}-{i}.jpg", 2000) for i in range(3)]
    assert peak <= limits.peak_bytes(), f"peak {peak / 1e6:.0f} MB above rest > {limits.peak_bytes() / 1e6:.0f} MB"
    assert after < 64e6, f"{after / 1e6:.0f} MB above rest once the requests were answered"
