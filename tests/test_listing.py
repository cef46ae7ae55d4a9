"""Every file the folder listing sees but cannot read gets an error line in predictions.jsonl: symbolic link loops,
broken links, vanished files, unreadable files and folders. Runs the real listing, decoding and writing with a
pipeline that has no models (each image then gets an empty answer), so the tests take milliseconds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion2stage.app.pipeline import Pipeline
from fashion2stage.app.predict import list_images, predict_folder


def _permissions_enforced(folder: Path) -> bool:
    """False as root (or with CAP_DAC_OVERRIDE), which reads files whatever their permissions."""
    probe = folder / "probe"
    probe.write_bytes(b"x")
    probe.chmod(0)
    try:
        probe.read_bytes()
        return False
    except PermissionError:
        return True
    finally:
        probe.unlink()


def _photo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)


def _records(out: Path) -> dict[str, dict]:
    return {r["image"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}


def test_links_that_go_nowhere_get_error_lines(tmp_path):
    images = tmp_path / "images"
    _photo(images / "good.jpg")
    _photo(images / "sub" / "deep.png")
    (images / "loop_a.jpg").symlink_to("loop_b.jpg")
    (images / "loop_b.jpg").symlink_to("loop_a.jpg")
    (images / "self.png").symlink_to("self.png")
    (images / "gone.jpg").symlink_to("nothing_here.jpg")
    (images / "sub" / "up").symlink_to("..")  # a folder link loop: not followed, listed once
    (images / "linked.jpg").symlink_to("good.jpg")  # a link to a readable photo is a photo
    summary = predict_folder(Pipeline(), images, tmp_path / "out", batch_size=2, progress=False)
    recs = _records(tmp_path / "out")
    assert list(recs) == ["gone.jpg", "good.jpg", "linked.jpg", "loop_a.jpg", "loop_b.jpg", "self.png",
                          "sub/deep.png"]
    assert {k: v["error"] for k, v in recs.items() if "error" in v} == {
        "gone.jpg": "broken symbolic link (its target does not exist)", "loop_a.jpg": "symbolic link loop",
        "loop_b.jpg": "symbolic link loop", "self.png": "symbolic link loop"}
    assert recs["linked.jpg"]["width"] == 8 and recs["sub/deep.png"]["garments"] == []
    assert summary.images == 7 and len(summary.errors) == 4


def test_a_file_that_vanishes_after_listing_gets_an_error_line(tmp_path):
    images = tmp_path / "images"
    for i in range(5):
        _photo(images / f"{i}.png")

    def remove_the_last(predictions):
        # called after the first batch; the decoder runs at most two images ahead, so 4.png is not read yet
        if predictions[0].image == "0.png":
            (images / "4.png").unlink()

    predict_folder(Pipeline(), images, tmp_path / "out", batch_size=1, progress=False, on_batch=remove_the_last)
    recs = _records(tmp_path / "out")
    assert list(recs) == [f"{i}.png" for i in range(5)]
    assert recs["4.png"] == {"image": "4.png", "error": "file not found"}
    assert all("error" not in recs[f"{i}.png"] for i in range(4))


def test_other_things_with_image_names(tmp_path):
    images = tmp_path / "images"
    _photo(images / "good.jpg")
    (images / "folder.jpg").mkdir()  # a folder named like an image is a folder: walked, not listed
    _photo(images / "folder.jpg" / "inner.jpg")
    os.mkfifo(images / "pipe.png")  # opening it would block: refused from its stat
    (images / ".hidden.jpg").write_bytes(b"")
    assert list_images(images) == ["folder.jpg/inner.jpg", "good.jpg", "pipe.png"]
    predict_folder(Pipeline(), images, tmp_path / "out", progress=False)
    assert _records(tmp_path / "out")["pipe.png"]["error"] == "not a regular file"


def test_unreadable_file_and_folder_get_error_lines(tmp_path):
    if not _permissions_enforced(tmp_path):
        pytest.skip("running as root: permissions do not stop reads")
    images = tmp_path / "images"
    _photo(images / "good.jpg")
    _photo(images / "secret.jpg")
    _photo(images / "locked" / "inside.jpg")
    (images / "secret.jpg").chmod(0)
    (images / "locked").chmod(0)
    try:
        predict_folder(Pipeline(), images, tmp_path / "out", progress=False)
    finally:
        (images / "locked").chmod(0o755)
    recs = _records(tmp_path / "out")
    assert recs["secret.jpg"]["error"] == "cannot read: permission denied"
    assert recs["locked/"]["error"] == "cannot open folder: Permission denied"
    assert "error" not in recs["good.jpg"]
