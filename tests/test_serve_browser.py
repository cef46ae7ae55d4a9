"""The page at / in a real headless Chromium (Debian's package, driven by Playwright) against a real uvicorn server.

Skips when no Chromium is installed (``.ci/run`` installs it where it can). ``FASHION2STAGE_SCREENSHOT=docs/serve.png``
also saves the screenshot the README shows.
"""
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from fashion2stage.app.serve.app import create_app

pytestmark = pytest.mark.slow

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "images" / "ccp_0062.jpg"
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)
# no network, no updates, no GPU: the browser only talks to our loopback server
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def server_url(shipped_reader):
    import uvicorn
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free loopback port, held from the start so nothing else takes it
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: shipped_reader), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    import httpx
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        pytest.fail("the server did not become ready")
    yield url
    server.should_exit = True
    thread.join(30)
    sock.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")
def test_page_shows_overlay_and_garments(server_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server_url + "/")
            with page.expect_response(lambda r: r.url.endswith("/v1/predict"), timeout=300_000) as answer:
                page.set_input_files("#files", str(PHOTO))
            prediction = answer.value.json()["predictions"][0]
            page.wait_for_selector("canvas.overlay[data-drawn=true]", timeout=60_000)
            assert prediction["image"] == PHOTO.name and prediction["garments"]
            # the garment list shows every garment of the answer, in its order
            types = page.eval_on_selector_all("ol.garments li", "lis => lis.map(li => li.dataset.type)")
            assert types == [g["type"] for g in prediction["garments"]]
            assert "fine_category" in page.inner_text("ol.garments li")
            assert page.inner_text("#status").startswith("Done: 1 photo(s)")
            # the overlay: the photo's own size, and the first garment's box drawn in its colour (PALETTE[0]) along
            # its left edge (most of it: a label or a landmark of another garment may cover a point or two)
            x1, y1, x2, y2 = prediction["garments"][0]["box"]
            probe = page.evaluate("""([x, ys]) => {
                const c = document.querySelector("canvas.overlay"), ctx = c.getContext("2d");
                return [c.width, c.height, ys.map((y) => Array.from(ctx.getImageData(x, y, 1, 1).data))];
            }""", [round(x1), [round(y1 + f * (y2 - y1)) for f in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]])
            assert probe[:2] == [prediction["width"], prediction["height"]]
            red = [max(abs(a - b) for a, b in zip(px[:3], (230, 25, 75))) < 40 for px in probe[2]]
            assert sum(red) >= 5, probe
            assert not errors, errors
            if os.environ.get("FASHION2STAGE_SCREENSHOT"):
                page.screenshot(path=os.environ["FASHION2STAGE_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
