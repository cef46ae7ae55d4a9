"""The page at / in a real headless Chromium (Debian's package, driven by Playwright) against a real uvicorn server.

Skips when no Chromium is installed (``.ci/run`` installs it where it can). ``FASHION2STAGE_SCREENSHOT=docs/serve.png``
also saves the screenshot the README shows; ``FASHION2STAGE_SCREENSHOT_PHONE=...`` the phone-width one.
"""
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from fashion2stage.app.serve.app import create_app
from fashion2stage.app.serve.limits import Limits
from fashion2stage.app.serve.server import build_server

pytestmark = pytest.mark.slow

PHOTO = Path(__file__).resolve().parents[1] / "examples" / "images" / "ccp_0062.jpg"
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)
# no network, no updates, no GPU: the browser only talks to our loopback server
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server_url(shipped_reader):
    import httpx
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free loopback port, held from the start so nothing else takes it
    server = build_server(create_app(lambda: shipped_reader), Limits(), log_config=None)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
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


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url, **options):
    """A new page at ``url`` once it has the server's settings (its slider at the server's --conf, 0.5 here)."""
    page = browser.new_page(**options)
    page.goto(url + "/")
    page.wait_for_function("() => document.querySelector('#conf').value === '0.5'", timeout=60_000)
    return page


def read_photos(page, paths, conf="0.50"):
    """Choose ``paths`` in the page; returns the predictions the server answered. The progress bar shows while the
    server reads them."""
    with page.expect_response(lambda r: "/v1/predict" in r.url, timeout=300_000) as answer:
        page.set_input_files("#files", [str(p) for p in paths])
        page.wait_for_selector("#progress:not([hidden])", timeout=60_000)
    assert f"conf={conf}" in answer.value.url
    return answer.value.json()["predictions"]


def test_page_shows_the_good_photo_and_an_error_card_for_the_junk_one(server_url, browser, tmp_path):
    junk = tmp_path / "notes.jpg"
    junk.write_text("not a photo\n")
    page = open_page(browser, server_url, viewport={"width": 1200, "height": 900}, accept_downloads=True)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    prediction, failed = read_photos(page, [PHOTO, junk])
    page.wait_for_selector("canvas.overlay[data-drawn=true]", timeout=60_000)
    assert prediction["image"] == PHOTO.name and prediction["garments"]
    assert failed == {"image": "notes.jpg", "error": "not an image (format not recognised)"}
    # the garment list shows every garment of the answer, in its order; the junk file has its own error card
    types = page.eval_on_selector_all("ol.garments li", "lis => lis.map(li => li.dataset.type)")
    assert types == [g["type"] for g in prediction["garments"]]
    assert "fine_category" in page.inner_text("ol.garments li")
    card = page.inner_text("section.result.failed")
    assert "notes.jpg" in card and "not an image" in card
    status = page.inner_text("#status")
    assert status == f"Done: 2 photo(s), {len(types)} garment(s), 1 not read." and page.is_hidden("#progress")
    assert not page.eval_on_selector("details", "d => d.open")  # the JSON is there, closed
    # the overlay: the photo's own size, and the first garment's box drawn in its colour (PALETTE[0]) along its
    # left edge (most of it: a label or a landmark of another garment may cover a point or two)
    x1, y1, x2, y2 = prediction["garments"][0]["box"]
    probe = page.evaluate("""([x, ys]) => {
        const c = document.querySelector("canvas.overlay"), ctx = c.getContext("2d");
        return [c.width, c.height, ys.map((y) => Array.from(ctx.getImageData(x, y, 1, 1).data))];
    }""", [round(x1), [round(y1 + f * (y2 - y1)) for f in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)]])
    assert probe[:2] == [prediction["width"], prediction["height"]]
    red = [max(abs(a - b) for a, b in zip(px[:3], (230, 25, 75))) < 40 for px in probe[2]]
    assert sum(red) >= 5, probe
    # "Download JSON" saves exactly the answer's lines, as predictions.jsonl
    with page.expect_download() as download:
        page.click("#download")
    saved = Path(download.value.path()).read_text().splitlines()
    assert download.value.suggested_filename == "predictions.jsonl"
    assert [json.loads(line) for line in saved] == [prediction, failed]
    if os.environ.get("FASHION2STAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["FASHION2STAGE_SCREENSHOT"], full_page=True)
    # the slider reads the same photos again at its confidence
    with page.expect_response(lambda r: "/v1/predict" in r.url, timeout=300_000) as strict:
        page.eval_on_selector("#conf", "s => { s.value = '0.9'; s.dispatchEvent(new Event('input')); "
                                       "s.dispatchEvent(new Event('change')); }")
    assert "conf=0.90" in strict.value.url
    kept = strict.value.json()["predictions"][0]["garments"]
    page.wait_for_function("() => document.querySelector('#status').textContent.startsWith('Done')")
    assert all(g["score"] >= 0.9 for g in kept) and page.inner_text("#conf-value") == "0.90"
    assert page.eval_on_selector_all("ol.garments li", "lis => lis.length") == len(kept)
    # reset: nothing shown, nothing to download, the slider back at the server's value
    page.click("#reset")
    assert page.eval_on_selector_all("section.result", "s => s.length") == 0
    assert page.is_disabled("#download") and page.input_value("#conf") == "0.5" and page.inner_text("#status") == ""
    assert page.request.get(server_url + "/favicon.ico").status == 200
    assert not errors, errors
    page.close()


def test_on_a_phone_the_columns_stack(server_url, browser, tmp_path):
    page = open_page(browser, server_url, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    read_photos(page, [PHOTO])
    page.wait_for_selector("canvas.overlay[data-drawn=true]", timeout=60_000)
    layout = page.evaluate("""() => {
        const r = (s) => document.querySelector(s).getBoundingClientRect();
        return {page: document.documentElement.scrollWidth, canvas: r("canvas.overlay"), side: r(".result .side")};
    }""")
    assert layout["page"] <= PHONE["width"], layout  # nothing sticks out sideways
    assert layout["canvas"]["width"] > 0.85 * PHONE["width"], layout  # the photo takes the screen's width
    assert layout["side"]["top"] >= layout["canvas"]["bottom"], layout  # the garment list comes under it
    page.screenshot(path=os.environ.get("FASHION2STAGE_SCREENSHOT_PHONE") or str(tmp_path / "phone.png"),
                    full_page=True)
    page.close()
